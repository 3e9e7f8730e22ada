//! `kyros agent`, the real binary, against the service on both engines (in this process, or
//! `kyros serve` for the restart): it claims a job, runs a
//! shell command, streams its output (through `GET …/output` and the WebSocket, in order),
//! completes with the exit status or fails with it; a cancelled job's command is killed; an agent
//! stopped with SIGTERM releases its job to another agent; an agent whose service restarts
//! completes its job; labels decide which agent may claim a job.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::processes::free_port;
use crate::common::ws::{Ws, connect, next_json};
use crate::common::{Backend, PgDatabase, TestApp, json, random_secret};
use futures_util::SinkExt;
use kyros::model::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PW: &str = "worker test password";
/// The longest any awaited change may take before a test fails (a bound, not a measurement).
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `kyros agent`; killed when dropped. Its log is in `log`.
struct AgentProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl AgentProcess {
    fn start(app: &TestApp, key: &str, name: &str, extra: &[&str], command: &[&str]) -> Self {
        Self::spawn(&app.base, app.data_dir.path(), key, name, extra, command)
    }

    fn spawn(
        base: &str,
        dir: &Path,
        key: &str,
        name: &str,
        extra: &[&str],
        command: &[&str],
    ) -> Self {
        let log = dir.join(format!("agent-{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut args = vec![
            "agent",
            "--server",
            base,
            "--name",
            name,
            "--poll-secs",
            "0.2",
        ];
        if !extra.contains(&"--heartbeat-secs") {
            args.extend_from_slice(&["--heartbeat-secs", "0.5"]);
        }
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        let child = Command::new(env!("CARGO_BIN_EXE_kyros"))
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KYROS_AGENT_KEY", key)
            .env("LOG_LEVEL", "debug")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn kyros agent");
        AgentProcess { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "{signal} sent");
    }

    /// Waits for the agent to exit; its exit status.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not exit; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn setup(backend: Backend) -> Option<(TestApp, String, String)> {
    setup_with(backend, &[]).await
}

async fn setup_with(backend: Backend, vars: &[(&str, &str)]) -> Option<(TestApp, String, String)> {
    let mut builder = TestApp::builder(backend).var("RATE_LIMIT_REQUESTS", "1000000");
    for (name, value) in vars {
        builder = builder.var(name, *value);
    }
    let app = builder.start().await?;
    app.create_user("runner", PW, Role::User).await;
    let token = app.token("runner", PW).await;
    let key = key(&app, &token, "worker key").await;
    Some((app, token, key))
}

async fn key(app: &TestApp, token: &str, name: &str) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(token)
        .json(&json!({"name": name, "scopes": ["jobs:claim"]}))
        .send()
        .await
        .expect("create key");
    assert_eq!(res.status(), 201);
    json(res).await["key"].as_str().expect("key").to_owned()
}

async fn submit(app: &TestApp, token: &str, body: Value) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("submit");
    assert_eq!(res.status(), 201);
    json(res).await["id"].as_str().expect("id").to_owned()
}

async fn job(app: &TestApp, token: &str, id: &str) -> Value {
    let res = app
        .get_with_token(&format!("/api/v1/jobs/{id}"), token)
        .await;
    assert_eq!(res.status(), 200);
    json(res).await
}

/// The job once `done` holds for it (polled; fails after [`PATIENCE`] with the agent's log).
async fn job_when(
    app: &TestApp,
    token: &str,
    id: &str,
    agent: &AgentProcess,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let job = job(app, token, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not get there: {job}\nagent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn output(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let res = app
        .get_with_token(&format!("/api/v1/jobs/{id}/output"), token)
        .await;
    assert_eq!(res.status(), 200);
    json(res).await["lines"]
        .as_array()
        .expect("lines")
        .to_owned()
}

fn texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["line"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until a file holds a process id, and returns it.
async fn pid_in(path: &Path, agent: &AgentProcess) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command did not start; agent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until the process is gone (it may linger as a zombie of the agent for a moment).
async fn gone(pid: &str, agent: &AgentProcess) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while alive(pid)
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} is still running; agent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subscribe(app: &TestApp, token: &str, id: &str) -> Ws {
    let mut ws = connect(app, "", &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("connect");
    next_json(&mut ws).await;
    ws.send(Message::text(
        json!({"type": "subscribe", "job_id": id}).to_string(),
    ))
    .await
    .expect("subscribe");
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    ws
}

async fn an_agent_runs_a_command_and_streams_its_output(backend: Backend) {
    let Some((app, token, key)) = setup(backend).await else {
        return;
    };
    let id = submit(&app, &token, json!({"title": "echo", "metadata": {"n": 7}})).await;
    let mut ws = subscribe(&app, &token, &id).await;
    let agent = AgentProcess::start(
        &app,
        &key,
        "builder-1",
        &[],
        &[
            "sh",
            "-c",
            "echo start; echo \"::progress::0.5 halfway\"; read job; echo \"got $KYROS_JOB_ID attempt $KYROS_JOB_ATTEMPT key=${KYROS_AGENT_KEY:-none}\"; sleep 1; echo done",
        ],
    );
    let done = job_when(&app, &token, &id, &agent, |j| j["status"] == "completed").await;
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["agent_name"], "builder-1");
    assert_eq!(done["attempt"], 1);
    assert_eq!(done["progress"], 0.5);
    assert_eq!(done["progress_message"], "halfway");
    let expected = vec![
        "start".to_owned(),
        format!("got {id} attempt 1 key=none"),
        "done".to_owned(),
    ];
    assert_eq!(
        done["result"]["output_tail"],
        json!(expected),
        "without a result file, the last lines are the result"
    );
    let lines = output(&app, &token, &id).await;
    assert_eq!(
        texts(&lines),
        expected,
        "in order, the progress line not among them"
    );
    assert!(lines.iter().all(|l| l["stream"] == "stdout"));
    assert_eq!(
        lines.iter().map(|l| l["seq"].clone()).collect::<Vec<_>>(),
        vec![json!(1), json!(2), json!(3)]
    );

    // The same lines arrived live, in order, between the claim and the completion.
    let mut live = Vec::new();
    let mut names = Vec::new();
    while !names.iter().any(|n| n == "job_completed") {
        let message = next_json(&mut ws).await;
        let event = &message["event"];
        let name = event["event"].as_str().unwrap_or_default().to_owned();
        if name == "job_output" {
            for line in event["lines"].as_array().expect("lines") {
                live.push(line["line"].as_str().expect("line").to_owned());
            }
        }
        names.push(name);
    }
    assert_eq!(live, expected);
    assert_eq!(names.first().map(String::as_str), Some("job_claimed"));
    assert!(names.iter().any(|n| n == "job_progress"), "{names:?}");

    // The agent as a record: real name, version, host, runs.
    let res = app.get_with_token("/api/v1/agents/", &token).await;
    let agents = json(res).await;
    let me = &agents["agents"][0];
    assert_eq!(me["name"], "builder-1");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert!(me["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(me["runsCompleted"], 1);
    assert_eq!(me["successRate"], 1.0);
    assert!(me["lastRunAt"].is_string());
    assert_eq!(me["status"], "idle");
}

async fn a_failing_command_fails_the_job_with_its_exit_code(backend: Backend) {
    let Some((app, token, key)) = setup(backend).await else {
        return;
    };
    let id = submit(&app, &token, json!({"title": "fails"})).await;
    let agent = AgentProcess::start(
        &app,
        &key,
        "builder-2",
        &[],
        &["sh", "-c", "echo working; echo 'disk full' >&2; exit 3"],
    );
    let failed = job_when(&app, &token, &id, &agent, |j| j["status"] == "failed").await;
    assert_eq!(failed["exit_code"], 3);
    let error = failed["error"].as_str().expect("error");
    assert!(error.starts_with("exit code 3"), "{error}");
    assert!(error.contains("disk full"), "the stderr tail: {error}");
    let lines = output(&app, &token, &id).await;
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stderr" && l["line"] == "disk full"),
        "{lines:?}"
    );
    let res = app.get_with_token("/api/v1/agents", &token).await;
    let me = json(res).await["agents"][0].clone();
    assert_eq!(me["runsFailed"], 1);
    assert_eq!(me["successRate"], 0.0);

    // A result file that is not JSON fails the job too, with a message that says so.
    let id = submit(&app, &token, json!({"title": "bad result"})).await;
    drop(agent);
    let agent = AgentProcess::start(
        &app,
        &key,
        "builder-2",
        &[],
        &["sh", "-c", "echo '{not json' > \"$KYROS_RESULT_FILE\""],
    );
    let failed = job_when(&app, &token, &id, &agent, |j| j["status"] == "failed").await;
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("result file is not JSON")),
        "{failed}"
    );

    // A result file that is JSON is the result.
    let id = submit(&app, &token, json!({"title": "good result"})).await;
    drop(agent);
    let agent = AgentProcess::start(
        &app,
        &key,
        "builder-2",
        &[],
        &[
            "sh",
            "-c",
            "echo '{\"artifacts\": 2}' > \"$KYROS_RESULT_FILE\"",
        ],
    );
    let done = job_when(&app, &token, &id, &agent, |j| j["status"] == "completed").await;
    assert_eq!(done["result"], json!({"artifacts": 2}));
}

async fn a_cancelled_job_s_command_is_killed(backend: Backend) {
    let Some((app, token, key)) = setup(backend).await else {
        return;
    };
    let id = submit(&app, &token, json!({"title": "long"})).await;
    let pids = app.data_dir.path().join("pids");
    let script = format!(
        "trap '' TERM; sleep 30 & echo $! > {p}.tmp; echo $$ >> {p}.tmp; mv {p}.tmp {p}; echo started; wait",
        p = pids.display()
    );
    // The shell ignores SIGTERM: only the SIGKILL after the grace ends it. Heartbeats are two
    // minutes apart, longer than this test waits: the cancel comes over the live channel.
    let agent = AgentProcess::start(
        &app,
        &key,
        "builder-3",
        &["--kill-grace-secs", "1", "--heartbeat-secs", "120"],
        &["sh", "-c", &script],
    );
    let _ = pid_in(&pids, &agent).await;
    let listed = std::fs::read_to_string(&pids).expect("pids");
    let (sleeper, shell) = listed.trim().split_once('\n').expect("two pids");
    job_when(&app, &token, &id, &agent, |j| j["status"] == "running").await;
    assert!(alive(sleeper) && alive(shell));
    let res = app
        .client
        .put(app.url(&format!("/api/v1/jobs/{id}/status?status=cancelled")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(res.status(), 200);
    gone(sleeper, &agent).await;
    gone(shell, &agent).await;
    let log = agent.log();
    assert!(log.contains("lease lost"), "{log}");
    let cancelled = job(&app, &token, &id).await;
    assert_eq!(
        cancelled["status"], "cancelled",
        "the agent did not complete it"
    );
}

async fn a_stopping_agent_releases_its_job_to_another(backend: Backend) {
    let Some((app, token, key)) = setup(backend).await else {
        return;
    };
    let other_key = self::key(&app, &token, "second key").await;
    let id = submit(&app, &token, json!({"title": "handed over"})).await;
    let pid_file = app.data_dir.path().join("first.pid");
    let script = format!(
        "echo $$ > {p}; echo first run; exec sleep 30",
        p = pid_file.display()
    );
    let mut first = AgentProcess::start(
        &app,
        &key,
        "first",
        &["--grace-secs", "1", "--kill-grace-secs", "1"],
        &["sh", "-c", &script],
    );
    let pid = pid_in(&pid_file, &first).await;
    job_when(&app, &token, &id, &first, |j| j["status"] == "running").await;
    first.signal("-TERM");
    assert!(first.exit_status().await.success(), "{}", first.log());
    assert!(!alive(&pid), "the command was stopped");
    let released = job(&app, &token, &id).await;
    assert_eq!(released["status"], "pending", "{}", first.log());
    assert_eq!(
        released["attempts"], 0,
        "a release does not count an attempt"
    );

    let second = AgentProcess::start(
        &app,
        &other_key,
        "second",
        &[],
        &["sh", "-c", "echo finished"],
    );
    let done = job_when(&app, &token, &id, &second, |j| j["status"] == "completed").await;
    assert_eq!(done["agent_name"], "second");
    assert_eq!(
        texts(&output(&app, &token, &id).await),
        vec!["first run", "finished"]
    );
}

/// `kyros serve`, the real binary, on one data directory (and PostgreSQL database), restartable
/// on the same port.
struct Served {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
    secret: String,
    port: u16,
    base: String,
}

const ADMIN: &str = "serve-admin";

impl Served {
    async fn start(backend: Backend) -> Option<Served> {
        kyros::install_crypto_provider();
        let pg = match backend {
            Backend::Postgres => Some(PgDatabase::create().await?),
            Backend::Sqlite => None,
        };
        let port = free_port();
        let mut served = Served {
            child: None,
            dir: tempfile::tempdir().expect("dir"),
            pg,
            secret: random_secret(),
            port,
            base: format!("http://127.0.0.1:{port}"),
        };
        served.up().await;
        Some(served)
    }

    async fn up(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kyros"));
        cmd.arg("serve")
            .env_clear()
            .env("KYROS_DATA_DIR", self.dir.path())
            .env("KYROS_BIND", format!("127.0.0.1:{}", self.port))
            .env("SECRET_KEY", &self.secret)
            .env("LOG_LEVEL", "WARNING")
            .env("FIRST_SUPERUSER", ADMIN)
            .env("FIRST_SUPERUSER_EMAIL", "serve-admin@example.org")
            .env("FIRST_SUPERUSER_PASSWORD", PW)
            .env("RATE_LIMIT_REQUESTS", "1000000")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pg) = &self.pg {
            cmd.env("DATABASE_URL", &pg.url);
        }
        self.child = Some(cmd.spawn().expect("spawn kyros serve"));
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "kyros serve did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, and wait for the exit.
    async fn down(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while child.try_wait().expect("wait").is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "kyros serve did not stop"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.send().await.expect("call");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.expect("json")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn an_agent_survives_a_restart_of_the_service(backend: Backend) {
    let Some(mut served) = Served::start(backend).await else {
        return;
    };
    let login = reqwest::Client::new()
        .post(format!("{}/auth/login", served.base))
        .json(&json!({"username": ADMIN, "password": PW}))
        .send()
        .await
        .expect("login");
    let token = login.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let key = served
        .call(
            reqwest::Method::POST,
            "/api/v1/api-keys",
            &token,
            Some(json!({"name": "steady", "scopes": ["jobs:claim"]})),
        )
        .await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let id = served
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs",
            &token,
            Some(json!({"title": "across a restart"})),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let go = served.dir.path().join("go");
    let script = format!(
        "echo before; while [ ! -e {go} ]; do sleep 0.1; done; echo after",
        go = go.display()
    );
    let agent = AgentProcess::spawn(
        &served.base,
        served.dir.path(),
        &key,
        "steady",
        &[],
        &["sh", "-c", &script],
    );
    let output_path = format!("/api/v1/jobs/{id}/output");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while texts(
        served
            .call(reqwest::Method::GET, &output_path, &token, None)
            .await["lines"]
            .as_array()
            .expect("lines"),
    ) != ["before"]
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.down().await;
    // The service is away while the command goes on: the agent keeps its output and outcome.
    std::fs::write(&go, "").expect("go");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !agent.log().contains("the service is unavailable") {
        assert!(tokio::time::Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.up().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let done = loop {
        let job = served
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{id}"),
                &token,
                None,
            )
            .await;
        if job["status"] == "completed" {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{job}\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["attempts"], 0, "the same run, not a retry");
    let lines = served
        .call(reqwest::Method::GET, &output_path, &token, None)
        .await;
    assert_eq!(
        texts(lines["lines"].as_array().expect("lines")),
        ["before", "after"]
    );
}

async fn labels_decide_which_agent_claims_a_job(backend: Backend) {
    let Some((app, token, key)) = setup(backend).await else {
        return;
    };
    // The GPU job is first in the queue; the agent without the label passes it by.
    let gpu = submit(&app, &token, json!({"title": "train", "requires": ["GPU"]})).await;
    app.clock.advance(chrono::Duration::seconds(1));
    let plain = submit(&app, &token, json!({"title": "lint"})).await;
    let cpu = AgentProcess::start(&app, &key, "cpu-only", &[], &["sh", "-c", "echo cpu"]);
    job_when(&app, &token, &plain, &cpu, |j| j["status"] == "completed").await;
    let waiting = job(&app, &token, &gpu).await;
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["requires"], json!(["gpu"]));
    drop(cpu);

    let gpu_agent = AgentProcess::start(
        &app,
        &key,
        "gpu-box",
        &["--labels", "gpu,linux"],
        &["sh", "-c", "echo trained"],
    );
    let done = job_when(&app, &token, &gpu, &gpu_agent, |j| {
        j["status"] == "completed"
    })
    .await;
    assert_eq!(done["agent_name"], "gpu-box");
    let res = app.get_with_token("/api/v1/agents", &token).await;
    let agents = json(res).await;
    assert_eq!(agents["agents"][0]["labels"], json!(["gpu", "linux"]));
    assert_eq!(agents["agents"][0]["capabilities"], json!(["gpu", "linux"]));
}

async fn a_flood_of_output_is_cut_at_the_job_s_budget(backend: Backend) {
    let Some((app, token, key)) =
        setup_with(backend, &[("KYROS_JOB_OUTPUT_MAX_BYTES", "20000")]).await
    else {
        return;
    };
    let id = submit(&app, &token, json!({"title": "chatty"})).await;
    // About 14 MB of output: the agent sends until the service says the budget is used up, then
    // reads on without sending, so the command is never blocked and finishes.
    let agent = AgentProcess::start(
        &app,
        &key,
        "flooded",
        &[],
        &["sh", "-c", "seq 1 2000000; echo finished"],
    );
    let done = job_when(&app, &token, &id, &agent, |j| j["status"] == "completed").await;
    assert_eq!(
        done["result"]["output_tail"]
            .as_array()
            .and_then(|t| t.last()),
        Some(&json!("finished")),
        "the command ran to its end"
    );
    let res = app
        .get_with_token(&format!("/api/v1/jobs/{id}/output?limit=5000"), &token)
        .await;
    let page = json(res).await;
    assert_eq!(page["truncated"], true);
    let lines = page["lines"].as_array().expect("lines");
    assert!(lines.len() < 5000, "{} lines kept", lines.len());
    assert_eq!(lines[0]["line"], "1");
    let last = lines.last().expect("a last line");
    assert_eq!(last["stream"], "system");
    assert!(
        last["line"]
            .as_str()
            .is_some_and(|l| l.contains("truncated"))
    );
}

/// The key never reaches argv, and an agent without one says what to set (exit status 2).
#[tokio::test]
async fn an_agent_without_a_key_says_what_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_kyros"))
        .args(["agent", "--server", "http://127.0.0.1:9", "--", "true"])
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KYROS_AGENT_KEY"), "{stderr}");
}

crate::backend_tests!(
    an_agent_runs_a_command_and_streams_its_output,
    a_failing_command_fails_the_job_with_its_exit_code,
    a_cancelled_job_s_command_is_killed,
    a_stopping_agent_releases_its_job_to_another,
    an_agent_survives_a_restart_of_the_service,
    labels_decide_which_agent_claims_a_job,
    a_flood_of_output_is_cut_at_the_job_s_budget,
);
