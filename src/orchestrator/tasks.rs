//! Collaborative tasks: every signed-in user reads and edits them (that is the collaboration);
//! deleting is for the creator, moderators and administrators (`auth::policy`). Changes carry a
//! version (optimistic concurrency) and go on the bus as `task_*` events.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::at_storage_precision;
use crate::model::User;
use crate::orchestrator::events::{NewEvent, ORCHESTRATOR, emit};
use crate::state::AppState;
pub use crate::store::tasks::TaskRow;
use crate::store::{StoreError, tasks as store};

/// Most tasks one listing returns.
pub const LIST_MAX: i64 = 1000;

/// Why a task operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("Task not found")]
    NotFound,
    #[error("Only the creator, moderators and administrators can delete a task")]
    Forbidden,
    /// Someone changed the task first.
    #[error("Precondition failed: the resource has changed")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The representation clients get: the body of every task answer and the `task` of every task
/// event.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Task)]
pub struct TaskView {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    /// Grows by one with every change (optimistic concurrency, with the ETag).
    pub version: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&TaskRow> for TaskView {
    fn from(t: &TaskRow) -> Self {
        TaskView {
            id: t.id,
            title: t.title.clone(),
            description: t.description.clone(),
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// [`TaskView`] as JSON.
pub fn to_json(t: &TaskRow) -> Value {
    serde_json::to_value(TaskView::from(t)).unwrap_or(Value::Null)
}

fn task_event(task: &TaskRow, name: &str, user: &User) -> NewEvent {
    NewEvent {
        stream: ORCHESTRATOR,
        event: name.to_owned(),
        actor: Some(user.username.clone()),
        target: Some(task.id.to_string()),
        task_id: Some(task.id.to_string()),
        run_id: None,
        owner_id: task.owner_id,
        payload: json!({"task": to_json(task), "user_id": user.id}),
    }
}

pub async fn find(state: &AppState, id: &str) -> Result<TaskRow, TaskError> {
    let id = Uuid::parse_str(id).map_err(|_| TaskError::NotFound)?;
    store::find(&state.db, id).await?.ok_or(TaskError::NotFound)
}

/// The newest tasks (at most [`LIST_MAX`]).
pub async fn list(state: &AppState) -> Result<Vec<TaskRow>, TaskError> {
    Ok(store::list(&state.db, LIST_MAX).await?)
}

pub async fn create(
    state: &AppState,
    user: &User,
    title: String,
    description: Option<String>,
) -> Result<TaskRow, TaskError> {
    let now = at_storage_precision(state.clock.now());
    let task = TaskRow {
        id: Uuid::new_v4(),
        title,
        description,
        version: 1,
        owner_id: Some(user.id),
        created_at: now,
        updated_at: now,
    };
    store::insert(&state.db, &task).await?;
    emit(state, task_event(&task, "task_created", user)).await;
    Ok(task)
}

/// Replaces title and description of `task` if it is still at its version.
pub async fn update(
    state: &AppState,
    user: &User,
    task: &TaskRow,
    title: String,
    description: Option<String>,
) -> Result<TaskRow, TaskError> {
    let mut next = task.clone();
    next.title = title;
    next.description = description;
    next.updated_at = at_storage_precision(state.clock.now());
    if !store::update(&state.db, &next, task.version).await? {
        return Err(TaskError::Changed);
    }
    next.version += 1;
    emit(state, task_event(&next, "task_updated", user)).await;
    Ok(next)
}

/// Deletes `task` (creator, moderators, administrators) if it is still at its version.
pub async fn delete(state: &AppState, user: &User, task: &TaskRow) -> Result<(), TaskError> {
    if !crate::auth::policy::may_delete_task(user, task.owner_id) {
        return Err(TaskError::Forbidden);
    }
    if !store::delete(&state.db, task.id, task.version).await? {
        return Err(TaskError::Changed);
    }
    emit(state, task_event(task, "task_deleted", user)).await;
    Ok(())
}
