-- Tasks, their workflow steps, the DAG edges and the transition history.
CREATE SCHEMA IF NOT EXISTS tasker;

CREATE TABLE tasker.tasks (
    task_uuid             uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    name                  text        NOT NULL,
    namespace             text        NOT NULL,
    version               text        NOT NULL,
    status                text        NOT NULL DEFAULT 'pending',
    context               jsonb       NOT NULL DEFAULT '{}'::jsonb,
    initiator             text        NOT NULL,
    source_system         text        NOT NULL,
    reason                text        NOT NULL,
    tags                  text[]      NOT NULL DEFAULT '{}',
    requested_at          timestamptz NOT NULL DEFAULT now(),
    correlation_id        uuid        NOT NULL,
    parent_correlation_id uuid,
    priority              integer     NOT NULL DEFAULT 0,
    options               jsonb,
    idempotency_key       text,
    request_body          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    completed_at          timestamptz
);

CREATE UNIQUE INDEX tasks_idempotency_key_idx ON tasker.tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_status_idx ON tasker.tasks (status);
CREATE INDEX tasks_namespace_idx ON tasker.tasks (namespace);
CREATE INDEX tasks_created_at_idx ON tasker.tasks (created_at DESC, task_uuid DESC);
CREATE INDEX tasks_correlation_id_idx ON tasker.tasks (correlation_id);

CREATE TABLE tasker.workflow_steps (
    step_uuid          uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    task_uuid          uuid        NOT NULL REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    name               text        NOT NULL,
    description        text        NOT NULL DEFAULT '',
    handler            text        NOT NULL,
    position           integer     NOT NULL,
    current_state      text        NOT NULL DEFAULT 'pending',
    attempts           integer     NOT NULL DEFAULT 0,
    max_attempts       integer     NOT NULL,
    retryable          boolean     NOT NULL DEFAULT true,
    retry_policy       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    results            jsonb,
    last_error         jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    completed_at       timestamptz,
    last_attempted_at  timestamptz,
    last_failure_at    timestamptz,
    next_retry_at      timestamptz,
    UNIQUE (task_uuid, name)
);

CREATE INDEX workflow_steps_task_idx ON tasker.workflow_steps (task_uuid, position);
CREATE INDEX workflow_steps_retry_due_idx ON tasker.workflow_steps (next_retry_at)
    WHERE current_state = 'waiting_for_retry';

CREATE TABLE tasker.workflow_step_edges (
    task_uuid      uuid NOT NULL REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    from_step_uuid uuid NOT NULL REFERENCES tasker.workflow_steps (step_uuid) ON DELETE CASCADE,
    to_step_uuid   uuid NOT NULL REFERENCES tasker.workflow_steps (step_uuid) ON DELETE CASCADE,
    name           text NOT NULL DEFAULT 'provides',
    PRIMARY KEY (from_step_uuid, to_step_uuid)
);

CREATE INDEX workflow_step_edges_task_idx ON tasker.workflow_step_edges (task_uuid);
CREATE INDEX workflow_step_edges_to_idx ON tasker.workflow_step_edges (to_step_uuid);

CREATE TABLE tasker.task_transitions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_uuid  uuid        NOT NULL REFERENCES tasker.tasks (task_uuid) ON DELETE CASCADE,
    from_state text,
    to_state   text        NOT NULL,
    metadata   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX task_transitions_task_idx ON tasker.task_transitions (task_uuid, id);

CREATE TABLE tasker.workflow_step_transitions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    step_uuid  uuid        NOT NULL REFERENCES tasker.workflow_steps (step_uuid) ON DELETE CASCADE,
    task_uuid  uuid        NOT NULL,
    from_state text,
    to_state   text        NOT NULL,
    attempt    integer     NOT NULL DEFAULT 0,
    metadata   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX workflow_step_transitions_step_idx ON tasker.workflow_step_transitions (step_uuid, id);
