//! `warrant user add|list|me`.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Value, json};
use warrant_core::User;

use super::{Context, decode};
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its API token (shown once)
    Add {
        /// Lowercase letters, digits, `.`, `_` and `-`
        name: String,
        /// A group the user belongs to (repeatable)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Make the user an admin
        #[arg(long)]
        admin: bool,
    },
    /// List users (admin)
    List,
    /// Show the user you are logged in as
    Me,
}

#[derive(Deserialize)]
struct CreatedUser {
    #[serde(flatten)]
    user: User,
    token: String,
}

#[derive(Deserialize)]
struct Users {
    users: Vec<User>,
}

pub async fn run(ctx: &Context, cmd: UserCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        UserCommand::Add {
            name,
            groups,
            admin,
        } => {
            let body = json!({ "name": name, "groups": groups, "admin": admin });
            let created: Value = client.post(&["v1", "users"], &body).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&created);
            }
            let created: CreatedUser = decode(&client, &created)?;
            output::text_line(&format!("created user `{}`", created.user.name))?;
            output::table(&user_details(&created.user))?;
            output::text_line(&format!(
                "\nAPI token for `{}` (shown only this once: hand it over securely now):\n\n    {}\n\n\
                 they log in with `warrant login --addr {}` and paste it",
                created.user.name,
                created.token,
                client.addr()
            ))
        }
        UserCommand::List => {
            let list: Value = client.get(&["v1", "users"], &[]).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&list);
            }
            let list: Users = decode(&client, &list)?;
            let mut t = output::list(&["name", "admin", "groups", "created"]);
            for u in &list.users {
                t.add_row(vec![
                    u.name.to_string(),
                    output::yes_no(u.admin),
                    output::joined(&u.groups),
                    output::time(u.created_at),
                ]);
            }
            output::table(&t)
        }
        UserCommand::Me => {
            let me: Value = client.get(&["v1", "users", "me"], &[]).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&me);
            }
            let me: User = decode(&client, &me)?;
            output::table(&user_details(&me))
        }
    }
}

fn user_details(u: &User) -> comfy_table::Table {
    output::details(vec![
        ("name", u.name.to_string()),
        ("admin", output::yes_no(u.admin)),
        ("groups", output::joined(&u.groups)),
        ("created", output::time(u.created_at)),
    ])
}
