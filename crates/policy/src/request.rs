//! Turns a [`DecisionInput`] into what Cedar evaluates: the entities (the
//! run, its agent and task, the delegating user and their groups, the
//! resource, the action and its risk class) and the context record.
//! Everything comes from the input; nothing is looked up.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
    Schema,
};

use crate::catalog::{ActionSpec, RiskClass};
use crate::input::{ApproveInput, DecisionInput};
use crate::load::{LoadError, action_uid};

/// Entity type names and action entities, parsed once per engine.
pub(crate) struct Names {
    user: EntityTypeName,
    group: EntityTypeName,
    agent: EntityTypeName,
    run: EntityTypeName,
    task: EntityTypeName,
    approval: EntityTypeName,
    resources: HashMap<&'static str, EntityTypeName>,
    /// action name -> the action entity and its group's
    actions: HashMap<String, (EntityUid, Vec<Entity>)>,
}

fn type_name(s: &str) -> Result<EntityTypeName, LoadError> {
    EntityTypeName::from_str(s)
        .map_err(|e| LoadError::whole("warrant.cedarschema", format!("internal error: {e}")))
}

impl Names {
    pub fn new(schema: &Schema) -> Result<Self, LoadError> {
        let internal =
            |e: String| LoadError::whole("warrant.cedarschema", format!("internal error: {e}"));
        let all = schema
            .action_entities()
            .map_err(|e| internal(e.to_string()))?;
        let mut actions = HashMap::new();
        let names = crate::catalog::CATALOG
            .iter()
            .map(|a| a.name)
            .chain([crate::catalog::APPROVE]);
        for name in names {
            let uid = action_uid(name)?;
            let mut ents = Vec::new();
            let mut todo = vec![uid.clone()];
            while let Some(u) = todo.pop() {
                let e = all
                    .get(&u)
                    .ok_or_else(|| internal(format!("action `{u}` is not in the schema")))?;
                ents.push(e.clone());
                todo.extend(all.ancestors(&u).into_iter().flatten().cloned());
            }
            actions.insert(name.to_owned(), (uid, ents));
        }
        Ok(Self {
            user: type_name("User")?,
            group: type_name("Group")?,
            agent: type_name("Agent")?,
            run: type_name("Run")?,
            task: type_name("Task")?,
            approval: type_name("Approval")?,
            resources: crate::catalog::ResourceKind::ALL
                .into_iter()
                .map(|k| Ok((k.as_str(), type_name(k.as_str())?)))
                .collect::<Result<_, LoadError>>()?,
            actions,
        })
    }

    fn uid(t: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(t.clone(), EntityId::new(id))
    }
}

/// The entities, principals, action, resource and context of one decision.
pub(crate) struct Parts {
    pub entities: Entities,
    pub run: EntityUid,
    pub user: EntityUid,
    pub action: EntityUid,
    pub resource: EntityUid,
    pub context: Context,
}

impl Parts {
    pub fn request(
        &self,
        principal: &EntityUid,
        schema: Option<&Schema>,
    ) -> Result<Request, String> {
        Request::new(
            principal.clone(),
            self.action.clone(),
            self.resource.clone(),
            self.context.clone(),
            schema,
        )
        .map_err(|e| e.to_string())
    }
}

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

fn set_of(v: impl IntoIterator<Item = String>) -> RestrictedExpression {
    RestrictedExpression::new_set(v.into_iter().map(RestrictedExpression::new_string))
}

fn attrs<const N: usize>(
    pairs: [(&str, RestrictedExpression); N],
) -> HashMap<String, RestrictedExpression> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Collects entities by uid; a later entity with the same uid is dropped
/// (the first one built is the authoritative one).
#[derive(Default)]
struct Bag {
    seen: HashSet<EntityUid>,
    list: Vec<Entity>,
}

impl Bag {
    fn push(&mut self, e: Entity) {
        if self.seen.insert(e.uid()) {
            self.list.push(e);
        }
    }

    fn entity(
        &mut self,
        uid: EntityUid,
        attrs: HashMap<String, RestrictedExpression>,
        parents: HashSet<EntityUid>,
    ) -> Result<(), String> {
        if self.seen.contains(&uid) {
            return Ok(());
        }
        let e = Entity::new(uid, attrs, parents).map_err(|e| e.to_string())?;
        self.push(e);
        Ok(())
    }
}

/// The user entity and their groups.
fn user_entities(
    names: &Names,
    bag: &mut Bag,
    user: &str,
    groups: &[String],
    admin: bool,
) -> Result<EntityUid, String> {
    let uid = Names::uid(&names.user, user);
    let parents: HashSet<EntityUid> = groups.iter().map(|g| Names::uid(&names.group, g)).collect();
    bag.entity(
        uid.clone(),
        attrs([("admin", RestrictedExpression::new_bool(admin))]),
        parents.clone(),
    )?;
    for g in parents {
        bag.push(Entity::new_no_attrs(g, HashSet::new()));
    }
    Ok(uid)
}

/// The run, agent, task and delegating user of `input`.
fn principal_entities(
    names: &Names,
    bag: &mut Bag,
    input: &DecisionInput,
) -> Result<(EntityUid, EntityUid), String> {
    let p = &input.principal;
    let user = user_entities(names, bag, &p.user, &p.user_groups, p.user_admin)?;
    let agent = Names::uid(&names.agent, &p.agent);
    let task = Names::uid(&names.task, &p.task);
    let run = Names::uid(&names.run, &p.run);
    let tier = p.tier.as_str();
    bag.entity(agent.clone(), attrs([("tier", s(tier))]), HashSet::new())?;
    let mut task_attrs = attrs([
        (
            "delegator",
            RestrictedExpression::new_entity_uid(user.clone()),
        ),
        ("agent", RestrictedExpression::new_entity_uid(agent.clone())),
    ]);
    if let Some(t) = &p.task_type {
        task_attrs.insert("type".into(), s(t));
    }
    bag.entity(task.clone(), task_attrs, HashSet::new())?;
    bag.entity(
        run.clone(),
        attrs([
            ("agent", RestrictedExpression::new_entity_uid(agent.clone())),
            ("task", RestrictedExpression::new_entity_uid(task)),
            (
                "delegator",
                RestrictedExpression::new_entity_uid(user.clone()),
            ),
            ("tier", s(tier)),
            ("depth", RestrictedExpression::new_long(i64::from(p.depth))),
        ]),
        HashSet::from([agent]),
    )?;
    Ok((run, user))
}

fn action_entities(names: &Names, bag: &mut Bag, action: &str) -> Result<EntityUid, String> {
    let (uid, ents) = names
        .actions
        .get(action)
        .ok_or_else(|| format!("action `{action}` is not in the schema"))?;
    for e in ents {
        bag.push(e.clone());
    }
    Ok(uid.clone())
}

/// The context record for an agent request.
fn context(
    input: &DecisionInput,
    class: RiskClass,
    risk: i64,
    sensitive: bool,
) -> Result<Context, String> {
    let c = &input.context;
    let mut pairs: Vec<(String, RestrictedExpression)> = vec![
        ("risk_score".into(), RestrictedExpression::new_long(risk)),
        ("risk_class".into(), s(class.as_str())),
        (
            "tainted".into(),
            RestrictedExpression::new_bool(input.run.tainted),
        ),
        ("history".into(), set_of(input.run.history.iter().cloned())),
        (
            "sensitive_paths_touched".into(),
            RestrictedExpression::new_bool(sensitive),
        ),
        (
            "branch_protected".into(),
            RestrictedExpression::new_bool(c.branch_protected),
        ),
        (
            "production".into(),
            RestrictedExpression::new_bool(c.production),
        ),
        (
            "untrusted_input".into(),
            RestrictedExpression::new_bool(c.untrusted_input),
        ),
        (
            "changed_paths".into(),
            set_of(c.changed_paths.iter().cloned()),
        ),
        (
            "depth".into(),
            RestrictedExpression::new_long(i64::from(input.principal.depth)),
        ),
    ];
    let optional = [
        ("task_type", &input.principal.task_type),
        ("repo", &c.repo),
        ("branch", &c.branch),
        ("base_branch", &c.base_branch),
        ("environment", &c.environment),
        ("commit", &c.commit),
        ("digest", &c.digest),
        ("tool", &c.tool),
        ("command", &c.command),
        ("path", &c.path),
        ("url", &c.url),
        ("method", &c.method),
        ("arguments", &c.arguments),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            pairs.push((k.to_owned(), s(v)));
        }
    }
    Context::from_pairs(pairs).map_err(|e| e.to_string())
}

/// Everything Cedar needs for an agent request.
pub(crate) fn build(
    names: &Names,
    input: &DecisionInput,
    spec: &ActionSpec,
    risk: i64,
    sensitive: bool,
) -> Result<Parts, String> {
    let mut bag = Bag::default();
    let (run, user) = principal_entities(names, &mut bag, input)?;
    let action = action_entities(names, &mut bag, spec.name)?;
    let rtype = names
        .resources
        .get(input.resource.kind.as_str())
        .ok_or_else(|| format!("`{}` is not a resource type", input.resource.kind))?;
    let resource = Names::uid(rtype, &input.resource.id);
    bag.push(Entity::new_no_attrs(resource.clone(), HashSet::new()));
    let context = context(input, spec.class, risk, sensitive)?;
    let entities = Entities::from_entities(bag.list, None).map_err(|e| e.to_string())?;
    Ok(Parts {
        entities,
        run,
        user,
        action,
        resource,
        context,
    })
}

/// Everything Cedar needs for a human approving an approval.
pub(crate) fn build_approve(names: &Names, input: &ApproveInput) -> Result<Parts, String> {
    let mut bag = Bag::default();
    // The approver first: if they are also the delegator, their current
    // groups and admin flag are the ones that count.
    let approver = user_entities(
        names,
        &mut bag,
        &input.approver,
        &input.approver_groups,
        input.approver_admin,
    )?;
    let (run, delegator) = principal_entities(names, &mut bag, &input.request)?;
    let action = action_entities(names, &mut bag, crate::catalog::APPROVE)?;
    let class =
        crate::catalog::action(&input.request.action).map_or("unknown", |a| a.class.as_str());
    let approval = Names::uid(&names.approval, &input.approval_id);
    bag.entity(
        approval.clone(),
        attrs([
            ("action", s(&input.request.action)),
            ("risk_class", s(class)),
            ("delegator", RestrictedExpression::new_entity_uid(delegator)),
            ("run", RestrictedExpression::new_entity_uid(run.clone())),
            (
                "agent",
                RestrictedExpression::new_entity_uid(Names::uid(
                    &names.agent,
                    &input.request.principal.agent,
                )),
            ),
        ]),
        HashSet::new(),
    )?;
    let entities = Entities::from_entities(bag.list, None).map_err(|e| e.to_string())?;
    Ok(Parts {
        entities,
        run,
        user: approver,
        action,
        resource: approval,
        context: Context::empty(),
    })
}
