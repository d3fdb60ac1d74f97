//! `toolmesh task`: follow, wait for and cancel a task that `toolmesh call --task` started. A
//! task lives only in the agent that created it, so each command goes to that agent (named by
//! its id, as `call --task` printed it), never to another provider of the same tool; an agent
//! that is gone has taken its tasks with it, and the command says so.

use crate::ops::{to_json, RegistryAccess};
use crate::Failure;
use clap::{Args, Subcommand};
use std::time::Duration;
use toolmesh_core::mcp::{McpClient, ResultShape};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::{Error, ErrorKind};

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Print the task as its agent reports it now: status, status message, and its result once it ended.
    Get(TaskArgs),
    /// Wait for the task to end and print its result, as `toolmesh call` prints one (Ctrl-C stops
    /// waiting; the task goes on).
    Wait(WaitArgs),
    /// Cancel the task and print it as its agent reports it then.
    Cancel(TaskArgs),
}

#[derive(Args)]
pub struct TaskArgs {
    /// The id of the agent that holds the task (the "agent" that `toolmesh call --task` printed).
    agent: String,
    /// The task's id (the "taskId" that `toolmesh call --task` printed).
    task_id: String,
    #[command(flatten)]
    access: RegistryAccess,
}

#[derive(Args)]
pub struct WaitArgs {
    #[command(flatten)]
    task: TaskArgs,
    /// How long to wait for the task to end.
    #[arg(long, default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    timeout_ms: u64,
}

pub async fn run(command: TaskCommand) -> Result<(), Failure> {
    match command {
        TaskCommand::Get(args) => {
            let (client, endpoint) = holder(&args).await?;
            let task = client.get_task(&endpoint, &args.task_id).await.map_err(|e| unreachable_holder(e, &args, &endpoint))?;
            println!("{}", to_json(&task)?);
        }
        TaskCommand::Cancel(args) => {
            let (client, endpoint) = holder(&args).await?;
            let task = client.cancel_task(&endpoint, &args.task_id).await.map_err(|e| unreachable_holder(e, &args, &endpoint))?;
            println!("{}", to_json(&task)?);
        }
        TaskCommand::Wait(WaitArgs { task: args, timeout_ms }) => {
            let (client, endpoint) = holder(&args).await?;
            let waited =
                tokio::time::timeout(Duration::from_millis(timeout_ms), client.wait_for_task(&endpoint, &args.task_id, ResultShape::Value));
            let value = waited
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        format!("task {} did not end within {timeout_ms} ms; it goes on (`toolmesh task get` shows it)", args.task_id),
                    )
                })?
                .map_err(|e| unreachable_holder(e, &args, &endpoint))?;
            println!("{}", to_json(&value)?);
        }
    }
    Ok(())
}

/// A client with this command's identity (the one that created the task: a task is visible only
/// to it) and the endpoint of the agent that holds the task.
async fn holder(args: &TaskArgs) -> Result<(McpClient, String), Failure> {
    let (registry, identity) = args.access.connect()?;
    let endpoint = holder_endpoint(&registry, &args.agent, &args.task_id).await?;
    Ok((McpClient::new(&identity)?, endpoint))
}

async fn holder_endpoint(registry: &RegistryClient, agent: &str, task_id: &str) -> Result<String, Error> {
    let agents = registry.list_agents().await?.agents;
    match agents.iter().find(|a| a.agent_id == agent) {
        Some(found) => Ok(found.endpoint.clone()),
        None => Err(Error::new(
            ErrorKind::UnknownAgent,
            format!(
                "no agent with id '{agent}' is registered at {}: it stopped, or its heartbeats lapsed, and task {task_id} \
                 ended with it (a task lives only in the agent that created it); call the tool again to start a new one",
                registry.url()
            ),
        )),
    }
}

/// An agent still registered but not answering may have just died: say what that means for the task.
fn unreachable_holder(error: Error, args: &TaskArgs, endpoint: &str) -> Error {
    if !error.is_unreachable() {
        return error;
    }
    error.context(format!(
        "agent '{}' at {endpoint}, which holds task {}, cannot be reached; if it stopped, the task ended with it",
        args.agent, args.task_id
    ))
}
