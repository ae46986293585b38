//! `warrant agent add|list|show`.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Map, Value};
use warrant_core::Agent;

use super::{Context, decode};
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register an agent (admin)
    Add {
        /// Lowercase letters, digits, `.`, `_` and `-`
        name: String,
        /// The most the agent may ever do
        #[arg(long, value_parser = ["read-only", "propose", "privileged"])]
        tier: String,
        /// The user accountable for the agent
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// What the agent is and where it runs
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List agents
    List,
    /// Show one agent
    Show { name: String },
}

#[derive(Deserialize)]
struct Agents {
    agents: Vec<Agent>,
}

pub async fn run(ctx: &Context, cmd: AgentCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let agent: Value = match cmd {
        AgentCommand::Add {
            name,
            tier,
            owner,
            description,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), name.into());
            body.insert("tier".into(), tier.into());
            if let Some(owner) = owner {
                body.insert("owner".into(), owner.into());
            }
            if let Some(description) = description {
                body.insert("description".into(), description.into());
            }
            client.post(&["v1", "agents"], &body).await?
        }
        AgentCommand::Show { name } => client.get(&["v1", "agents", &name], &[]).await?,
        AgentCommand::List => {
            let list: Value = client.get(&["v1", "agents"], &[]).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&list);
            }
            let list: Agents = decode(&client, &list)?;
            let mut t = output::list(&["name", "tier", "owner", "source", "description"]);
            for a in &list.agents {
                t.add_row(vec![
                    a.name.to_string(),
                    a.tier.to_string(),
                    output::or_dash(a.owner.as_ref()),
                    a.source.clone(),
                    output::or_dash(Some(&a.description)),
                ]);
            }
            return output::table(&t);
        }
    };
    if ctx.output == OutputFormat::Json {
        return output::json(&agent);
    }
    let a: Agent = decode(&client, &agent)?;
    output::table(&output::details(vec![
        ("name", a.name.to_string()),
        ("tier", a.tier.to_string()),
        ("owner", output::or_dash(a.owner.as_ref())),
        ("description", output::or_dash(Some(&a.description))),
        ("source", a.source.clone()),
        ("created", output::time(a.created_at)),
    ]))
}
