//! The docker collector against the real Docker engine of this machine: volumes and containers made
//! by the test (from an image imported from busybox-static, since nothing can be pulled here), the
//! agent's metrics compared with `docker version`, `docker info`, `docker volume inspect`,
//! `docker inspect`, findmnt and `stat -f` read right after, and the checks' verdicts. Then sockets
//! with no engine and a socket served by the test that answers malformed HTTP (the only fake here:
//! a real engine cannot be made to answer garbage).
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Agent, sample};
use serde_json::Value;

/// The collectors other than docker and host stay off: not what these tests look at.
const OTHERS_OFF: [&str; 4] =
    ["--no-collector.diskstats", "--no-collector.kmsg", "--no-collector.queue", "--no-collector.fabric"];

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn json(args: &[&str]) -> Value {
    let text = docker(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("docker {args:?} is not JSON ({e}): {text}"))
}

/// Everything the test made, removed on drop (also when an assertion fails).
#[derive(Default)]
struct Made {
    containers: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        let run = |args: Vec<&str>| {
            let _ = Command::new("docker").args(args).output();
        };
        for c in &self.containers {
            run(vec!["rm", "-f", "-v", c]);
        }
        for v in &self.volumes {
            run(vec!["volume", "rm", "-f", v]);
        }
        for i in &self.images {
            run(vec!["rmi", "-f", i]);
        }
    }
}

/// Whether the engine can be used (root or the docker group, the engine running). Under CI=true
/// anything missing fails.
fn engine_available() -> bool {
    if common::tool("docker").is_none() || common::tool("busybox").is_none() {
        return false;
    }
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ID}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!common::in_ci(), "the Docker engine must run and answer under CI=true");
        eprintln!("skipping: the Docker engine does not answer");
    }
    ok
}

fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{nanos:x}", std::process::id())
}

/// A tiny image: busybox-static as /bin/busybox plus the applets the test uses.
fn import_image(made: &mut Made, id: &str) -> String {
    let busybox = common::tool("busybox").unwrap();
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "dd", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let tar = root.path().join("root.tar");
    let status = Command::new("tar")
        .args([
            "-C",
            root.path().to_str().unwrap(),
            "--exclude=./root.tar",
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let image = format!("storwatch-test-{id}:1");
    made.images.push(image.clone());
    docker(&["import", tar.to_str().unwrap(), &image]);
    image
}

fn stat_f(path: &str) -> (u64, u64) {
    let out = Command::new("stat").args(["-f", "-c", "%S %b %a", path]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let n: Vec<u64> = text.split_whitespace().map(|w| w.parse().unwrap()).collect();
    (n[0] * n[1], n[0] * n[2])
}

fn findmnt_fstype(path: &str) -> String {
    let out = Command::new("findmnt").args(["-n", "-o", "FSTYPE", "-T", path]).output().unwrap();
    assert!(out.status.success(), "findmnt -T {path}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn version_in(v: &str, min: (u32, u32), max: (u32, u32)) -> bool {
    let mut p = v.split(['.', '-', '+']).map(|p| p.parse::<u32>().unwrap_or(0));
    let mm = (p.next().unwrap(), p.next().unwrap());
    mm >= min && mm <= max
}

#[test]
fn metrics_match_the_real_engine() {
    if !engine_available() {
        return;
    }
    let id = unique();
    let mut made = Made::default();
    let image = import_image(&mut made, &id);
    let (data, conf, idle) = (format!("swt-data-{id}"), format!("swt-conf-{id}"), format!("swt-idle-{id}"));
    for (v, labels) in
        [(&data, &["app=storwatch-test", "tier=db"][..]), (&conf, &["role=config"]), (&idle, &[])]
    {
        made.volumes.push(v.clone());
        let mut args = vec!["volume", "create"];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.push(v);
        docker(&args);
    }
    let (db, backup) = (format!("swt-db-{id}"), format!("swt-backup-{id}"));
    made.containers.extend([db.clone(), backup.clone()]);
    let (m1, m2, m3) = (format!("{data}:/data"), format!("{conf}:/conf:ro"), format!("{data}:/src"));
    docker(&["run", "-d", "--name", &db, "-v", &m1, "-v", &m2, &image, "/bin/sleep", "600"]);
    docker(&["run", "-d", "--name", &backup, "-v", &m3, &image, "/bin/sleep", "600"]);
    // 1 MiB in the data volume, for the volume size.
    docker(&["exec", &db, "/bin/dd", "if=/dev/zero", "of=/data/f", "bs=1024", "count=1024"]);

    let mut args = OTHERS_OFF.to_vec();
    args.push("--collector.docker.volume-sizes");
    let agent = Agent::start(&args);
    agent.wait_ready();
    let body = agent.metrics();
    // The oracles, read right after.
    let version = json(&["version", "--format", "{{json .Server}}"]);
    let info = json(&["info", "--format", "{{json .}}"]);
    let volumes = json(&["volume", "inspect", &data, &conf, &idle]);
    let containers = json(&["inspect", &db, &backup]);

    assert_eq!(sample(&body, "storwatch_docker_up"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"docker\"}"), Some(1.0));
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    let (server_version, driver, root) =
        (s(&version["Version"]), s(&info["Driver"]), s(&info["DockerRootDir"]));
    let engine = format!(
        "storwatch_docker_engine_info{{version=\"{server_version}\",api_version=\"{}\",min_api_version=\"{}\",storage_driver=\"{driver}\",data_root=\"{root}\"}}",
        s(&version["ApiVersion"]),
        s(&version["MinAPIVersion"]),
    );
    assert_eq!(sample(&body, &engine), Some(1.0), "{engine} in\n{body}");

    for v in volumes.as_array().unwrap() {
        let (name, path) = (s(&v["Name"]), s(&v["Mountpoint"]));
        let series = format!(
            "storwatch_docker_volume_info{{volume=\"{name}\",driver=\"{}\",scope=\"{}\",path=\"{path}\"}}",
            s(&v["Driver"]),
            s(&v["Scope"])
        );
        assert_eq!(sample(&body, &series), Some(1.0), "{series}");
        let labels = v["Labels"].as_object().cloned().unwrap_or_default();
        let shown = common::samples(&body, "storwatch_docker_volume_label_info")
            .into_iter()
            .filter(|(l, _)| l.starts_with(&format!("volume=\"{name}\",")))
            .count();
        assert_eq!(shown, labels.len(), "{name}");
        for (k, val) in &labels {
            let series = format!(
                "storwatch_docker_volume_label_info{{volume=\"{name}\",label=\"{k}\",value=\"{}\"}}",
                s(val)
            );
            assert_eq!(sample(&body, &series), Some(1.0), "{series}");
        }
        // The filesystem that holds it, and its space.
        let fstype = findmnt_fstype(&path);
        let info = common::samples(&body, "storwatch_docker_filesystem_info");
        let row = info.iter().find(|(l, _)| l.starts_with(&format!("path=\"{path}\",role=\"volume\",")));
        assert!(row.is_some_and(|(l, _)| l.contains(&format!("fstype=\"{fstype}\""))), "{path}: {row:?}");
        let (size, avail) = stat_f(&path);
        assert_eq!(
            sample(&body, &format!("storwatch_docker_filesystem_size_bytes{{path=\"{path}\"}}")),
            Some(size as f64)
        );
        let seen =
            sample(&body, &format!("storwatch_docker_filesystem_avail_bytes{{path=\"{path}\"}}")).unwrap();
        // Other processes write to this filesystem between the two reads.
        assert!((seen - avail as f64).abs() <= size as f64 * 0.01, "{path}: {seen} vs {avail}");
    }
    let used = |v: &str| sample(&body, &format!("storwatch_docker_volume_containers{{volume=\"{v}\"}}"));
    assert_eq!((used(&data), used(&conf), used(&idle)), (Some(2.0), Some(1.0), Some(0.0)));
    assert!(sample(&body, "storwatch_docker_volumes_dangling").unwrap() >= 1.0);
    let size = sample(&body, &format!("storwatch_docker_volume_size_bytes{{volume=\"{data}\"}}")).unwrap();
    assert!((1048576.0..1048576.0 + 65536.0).contains(&size), "{size}");

    let mut ro_mounts = 0;
    for c in containers.as_array().unwrap() {
        let name = s(&c["Name"]).trim_start_matches('/').to_owned();
        for m in c["Mounts"].as_array().unwrap() {
            let series = format!(
                "storwatch_docker_container_mount_writable{{container=\"{name}\",type=\"{}\",volume=\"{}\",destination=\"{}\"}}",
                s(&m["Type"]),
                s(&m["Name"]),
                s(&m["Destination"])
            );
            let rw = m["RW"].as_bool().unwrap();
            assert_eq!(sample(&body, &series), Some(if rw { 1.0 } else { 0.0 }), "{series}");
            ro_mounts += usize::from(!rw);
        }
    }
    assert_eq!(ro_mounts, 1, "the :ro mount of the config volume");

    let fstype = findmnt_fstype(&root);
    let row = common::samples(&body, "storwatch_docker_filesystem_info");
    assert!(
        row.iter()
            .any(|(l, _)| l.starts_with(&format!("path=\"{root}\",role=\"data_root\",fstype=\"{fstype}\",")))
    );

    // The checks.
    let ok = |check: &str, subject: &str| {
        sample(&body, &format!("storwatch_check_ok{{check=\"{check}\",subject=\"{subject}\"}}"))
            .unwrap_or_else(|| panic!("no {check}/{subject}"))
    };
    let in_range = version_in(&server_version, (20, 10), (25, 0));
    eprintln!("engine {server_version} ({driver}): in 20.10-25.0: {in_range}");
    assert_eq!(ok("docker_engine", "version"), if in_range { 1.0 } else { 0.0 });
    assert_eq!(ok("docker_engine", "storage_driver"), if driver == "overlay2" { 1.0 } else { 0.0 });
    assert_eq!(ok("mounts", &format!("{db}:/conf")), 0.0, "a read-only volume mount fails");
    assert_eq!(ok("mounts", &format!("volume {data}")), 1.0, "a shared volume is reported and passes");
    let data_path = s(&volumes[0]["Mountpoint"]);
    let fs_ok = ["xfs", "ext4"].contains(&findmnt_fstype(&data_path).as_str());
    assert_eq!(ok("filesystem", &data_path), if fs_ok { 1.0 } else { 0.0 });
    let (size, avail) = stat_f(&root);
    let margin = (avail as f64 - size as f64 * 0.1).abs() / size as f64;
    if margin > 0.01 {
        assert_eq!(ok("capacity", &root), if avail as f64 >= size as f64 * 0.1 { 1.0 } else { 0.0 });
    }

    // A config that moves the version range across the real version flips the verdict, and the
    // mounts options flip theirs.
    let mut p = server_version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (p.next().unwrap(), p.next().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let range = if in_range {
        format!("min_version = \"{}.0\"\nmax_version = \"{}.0\"", major + 1, major + 2)
    } else {
        format!("min_version = \"{major}.{minor}\"\nmax_version = \"{major}.{minor}\"")
    };
    std::fs::write(
        &config,
        format!("[checks.docker_engine]\n{range}\n[checks.mounts]\nallow_read_only = [\"{conf}\"]\nfail_shared = true\n"),
    )
    .unwrap();
    let mut args =
        vec!["check", "--window=100ms", "--output=json", "--config.file", config.to_str().unwrap()];
    args.extend(OTHERS_OFF);
    let out = Command::new(env!("CARGO_BIN_EXE_storwatch")).args(&args).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdict = |check: &str, subject: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == check && r["subject"] == subject)
            .unwrap_or_else(|| panic!("no {check}/{subject} in {report:#}"))["ok"]
            .as_bool()
            .unwrap()
    };
    assert_eq!(verdict("docker_engine", "version"), !in_range, "{report:#}");
    assert!(verdict("mounts", &format!("{db}:/conf")), "allowed read-only");
    assert!(!verdict("mounts", &format!("volume {data}")), "fail_shared");
    assert_eq!(out.status.code(), Some(1), "some check fails");
    drop(made);
    for v in [&data, &conf, &idle] {
        assert!(
            Command::new("docker").args(["volume", "inspect", v]).output().unwrap().status.code() != Some(0)
        );
    }
}

/// A client's request head: the bytes read until the blank line that ends it (or the peer stops).
fn read_head(conn: &mut impl Read) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Serves `answer` to every connection on a unix socket (after reading the request head); with
/// `hold`, says nothing and keeps the connection open.
fn serve(path: &Path, answer: &'static [u8], hold: bool) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            read_head(&mut conn);
            if hold {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(60));
                    drop(conn);
                });
            } else {
                let _ = conn.write_all(answer);
            }
        }
    });
}

fn assert_down(agent: &mut Agent, kind: Option<&str>, what: &str) {
    agent.wait_ready();
    let body = agent.metrics();
    assert_eq!(sample(&body, "storwatch_docker_up"), Some(0.0), "{what}:\n{body}");
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"docker\"}"), Some(1.0), "{what}");
    let errors = |k: &str| {
        sample(&body, &format!("storwatch_collector_errors_total{{collector=\"docker\",kind=\"{k}\"}}"))
    };
    let unknown = |subject: &str| {
        sample(&body, &format!("storwatch_check_unknown{{check=\"docker_engine\",subject=\"{subject}\"}}"))
    };
    match kind {
        Some(k) => {
            assert!(errors(k).unwrap() >= 1.0, "{what}: no {k} error\n{body}");
            // Its checks are there, unknown: never missing, never passing on what was not read.
            assert_eq!((unknown("version"), unknown("storage_driver")), (Some(1.0), Some(1.0)), "{what}");
            assert_eq!(sample(&body, "storwatch_checks_unknown{check=\"mounts\"}"), Some(1.0), "{what}");
            assert!(!body.contains("storwatch_check_ok{check=\"docker_engine\""), "{what}");
        }
        None => {
            assert_eq!(errors("io"), Some(0.0), "{what}");
            assert_eq!(unknown("version"), None, "{what}: no engine, nothing to judge");
        }
    }
    assert_eq!(errors("internal"), Some(0.0), "{what}: no panic");
    assert!(!body.contains("storwatch_docker_engine_info"), "{what}");
    // The host collector is not disturbed.
    assert_eq!(sample(&body, "storwatch_collector_success{collector=\"host\"}"), Some(1.0), "{what}");
    assert!(body.contains("storwatch_host_kernel_info{"), "{what}");
    assert!(agent.alive(), "{what}");
}

#[test]
fn no_engine_and_malformed_answers() {
    let dir = tempfile::tempdir().unwrap();
    let empty_root = tempfile::tempdir().unwrap();
    let start_in = |socket: &Path, root: &Path| {
        let flag = format!("--collector.docker.socket={}", socket.display());
        let root = format!("--path.rootfs={}", root.display());
        let mut args = OTHERS_OFF.to_vec();
        args.extend([flag.as_str(), root.as_str(), "--collector.docker.interval=200ms"]);
        Agent::start(&args)
    };
    let start = |socket: &Path| start_in(socket, Path::new("/"));

    // No socket and no data root: no engine on this host; not an error.
    let mut agent = start_in(&dir.path().join("absent.sock"), empty_root.path());
    assert_down(&mut agent, None, "absent socket, no data root");

    // No socket, but the engine's data root exists (this machine's /var/lib/docker): the socket
    // is misconfigured or not mounted, an error that names both.
    assert!(Path::new("/var/lib/docker").is_dir(), "Docker runs on this kind of machine");
    let mut agent = start(&dir.path().join("absent.sock"));
    assert_down(&mut agent, Some("io"), "absent socket beside a data root");
    let log = agent.drain_log().join("\n");
    assert!(
        log.contains("absent.sock: no socket, but the engine's data root /var/lib/docker exists"),
        "{log}"
    );

    // A socket file nobody listens on: the engine stopped.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let mut agent = start(&stale);
    assert_down(&mut agent, Some("io"), "stale socket");

    let cases: [(&str, &[u8], &str); 8] = [
        ("garbage", b"\x00\xffgarbage bytes\r\n\r\n", "parse"),
        ("truncated headers", b"HTTP/1.1 200 OK\r\nContent-Ty", "parse"),
        ("huge Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n{}", "parse"),
        ("invalid Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n{}", "parse"),
        ("short body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Version\":", "parse"),
        ("invalid JSON", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{Version:", "parse"),
        (
            "bad chunk",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n{}\r\n0\r\n\r\n",
            "parse",
        ),
        ("server error", b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}", "io"),
    ];
    for (i, (what, answer, kind)) in cases.into_iter().enumerate() {
        let socket = dir.path().join(format!("bad{i}.sock"));
        serve(&socket, answer, false);
        let mut agent = start(&socket);
        assert_down(&mut agent, Some(kind), what);
    }

    // An engine that accepts and never answers: the request times out (5 s), no thread hangs.
    let socket = dir.path().join("silent.sock");
    serve(&socket, b"", true);
    let mut agent = start(&socket);
    assert_down(&mut agent, Some("io"), "silent engine");
    let log = agent.drain_log().join("\n");
    assert!(log.contains("timed out"), "{log}");
}

/// Forwards every connection on `path` to the real engine's socket and records each request line.
fn recording_proxy(path: &Path) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let listener = UnixListener::bind(path).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { return };
            let head = read_head(&mut client);
            let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_owned();
            record.lock().unwrap().push(line);
            let mut engine = std::os::unix::net::UnixStream::connect("/var/run/docker.sock").unwrap();
            engine.write_all(&head).unwrap();
            let _ = std::io::copy(&mut engine, &mut client);
        }
    });
    seen
}

/// Reads the engine's volumes and containers only when its event log says they changed: a run
/// on an unchanged engine asks `/events` alone, and a volume made or removed between two runs is
/// in the next sample.
#[test]
fn volumes_and_containers_are_read_again_only_on_events() {
    use storwatch::paths::Paths;
    use storwatch::sources::{Sample as AnySample, Source, docker};
    if !engine_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("proxy.sock");
    let seen = recording_proxy(&proxy);
    let options = docker::Options { socket: Some(proxy), volume_sizes: false };
    let mut source = docker::Docker::new(Paths::default(), Duration::from_secs(30), &options);
    let mut run = |what: &str| {
        seen.lock().unwrap().clear();
        let out = source.sample().unwrap();
        assert!(out.errors.is_empty(), "{what}: {:?}", out.errors);
        let AnySample::Docker(docker::Sample { engine: Some(engine), .. }) = out.sample else {
            panic!("{what}: no engine in the sample");
        };
        let paths: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap_or("").split('?').next().unwrap_or("").to_owned())
            .collect();
        let volumes: Vec<String> = engine.snapshot.volumes.iter().map(|v| v.name.clone()).collect();
        (paths, volumes)
    };
    let full = ["/version", "/info", "/volumes", "/containers/json"];

    let (paths, _) = run("first run");
    assert_eq!(paths, full, "the first run reads everything");
    let (paths, _) = run("unchanged engine");
    assert_eq!(paths, ["/events"], "an unchanged engine is asked for its events only");

    let mut made = Made::default();
    let name = format!("storwatch-events-{}", unique());
    docker(&["volume", "create", &name]);
    made.volumes.push(name.clone());
    let (paths, volumes) = run("after docker volume create");
    assert_eq!(paths[0], "/events");
    assert_eq!(paths[1..], full, "an event makes a full read");
    assert!(volumes.contains(&name), "the new volume is in the next sample: {volumes:?}");
    let (paths, _) = run("unchanged again");
    assert_eq!(paths, ["/events"], "the event is not taken twice");

    docker(&["volume", "rm", &name]);
    let (paths, volumes) = run("after docker volume rm");
    assert_eq!(paths[1..], full);
    assert!(!volumes.contains(&name), "{volumes:?}");
}
