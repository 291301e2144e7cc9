//! The Docker Engine API answers this collector reads, as serde structs holding only the fields it
//! uses (unknown fields are ignored, missing optional ones default). The field names are the
//! Engine API's (https://docs.docker.com/reference/api/engine/, v1.41 to v1.52 agree on them):
//!
//! ```text
//! GET /version          {"Version":"20.10.24+dfsg1","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux",...}
//! GET /info             {"Driver":"overlay2","DockerRootDir":"/var/lib/docker","Containers":3,...}
//! GET /volumes          {"Volumes":[{"Name":"pg","Driver":"local","Mountpoint":"/var/lib/docker/volumes/pg/_data",
//!                        "Scope":"local","Labels":{"app":"pg"},...}],"Warnings":null}
//! GET /containers/json?all=1
//!                       [{"Id":"3833ff...","Names":["/db"],"State":"running","Mounts":[{"Type":"volume",
//!                        "Name":"pg","Source":"/var/lib/docker/volumes/pg/_data","Destination":"/data",
//!                        "Driver":"local","Mode":"z","RW":true,"Propagation":""}],...}]
//! GET /system/df?type=volume
//!                       {"Volumes":[{"Name":"pg","UsageData":{"Size":4096,"RefCount":1}}],...}
//! GET /events?since=..&until=..&filters=..
//!                       {"Type":"volume","Action":"create","Actor":{"ID":"pg",...},"time":1796311944,
//!                        "timeNano":1796311944971442447}\n ... (one object per event)
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Version {
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Info {
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "DockerRootDir")]
    pub root_dir: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Volumes {
    #[serde(rename = "Volumes", deserialize_with = "null_is_empty")]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Volume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: String,
    #[serde(rename = "Scope")]
    pub scope: String,
    #[serde(rename = "Labels", deserialize_with = "null_is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Container {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", deserialize_with = "null_is_empty")]
    pub names: Vec<String>,
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "Mounts", deserialize_with = "null_is_empty")]
    pub mounts: Vec<Mount>,
}

impl Container {
    /// The container's name without the leading `/` (its short id when it has none).
    pub fn name(&self) -> String {
        match self.names.first() {
            Some(n) => n.trim_start_matches('/').to_owned(),
            None => self.id.chars().take(12).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`, `npipe`, `cluster`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct DiskUsage {
    #[serde(rename = "Volumes", deserialize_with = "null_is_empty")]
    pub volumes: Vec<VolumeUsage>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct VolumeUsage {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "UsageData")]
    pub usage: Option<UsageData>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UsageData {
    /// Bytes; -1 when the engine did not compute it.
    #[serde(rename = "Size")]
    pub size: i64,
}

/// One event of `/events`: what changed, and when (nanoseconds since the epoch).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// Parses the events of one `/events` answer: JSON objects one after another.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    serde_json::Deserializer::from_slice(body).into_iter::<Event>().collect()
}

/// `null` (which the engine writes for empty lists and maps) as the empty value.
fn null_is_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parses one API answer. The error is serde_json's (line, column and what was expected).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_answers() {
        // Captured from Docker 20.10.24+dfsg1 (Debian 12), shortened.
        let v: Version = parse(br#"{"Platform":{"Name":""},"Components":[{"Name":"Engine","Version":"20.10.24+dfsg1"}],"Version":"20.10.24+dfsg1","ApiVersion":"1.41","MinAPIVersion":"1.12","GitCommit":"5d6db84","Os":"linux"}"#).unwrap();
        assert_eq!(
            (v.version.as_str(), v.api_version.as_str(), v.min_api_version.as_str()),
            ("20.10.24+dfsg1", "1.41", "1.12")
        );
        let i: Info = parse(br#"{"ID":"H4OS","Containers":0,"Driver":"fuse-overlayfs","DriverStatus":null,"DockerRootDir":"/var/lib/docker"}"#).unwrap();
        assert_eq!((i.driver.as_str(), i.root_dir.as_str()), ("fuse-overlayfs", "/var/lib/docker"));
        let v: Volumes = parse(br#"{"Volumes":[{"CreatedAt":"2026-11-26T20:37:05Z","Driver":"local","Labels":{"a":"b"},"Mountpoint":"/var/lib/docker/volumes/probevol/_data","Name":"probevol","Options":null,"Scope":"local"},{"Name":"n","Labels":null}],"Warnings":null}"#).unwrap();
        assert_eq!(v.volumes[0].labels["a"], "b");
        assert_eq!(v.volumes[0].mountpoint, "/var/lib/docker/volumes/probevol/_data");
        assert!(v.volumes[1].labels.is_empty());
        assert_eq!(parse::<Volumes>(br#"{"Volumes":null,"Warnings":null}"#).unwrap().volumes, []);
        let c: Vec<Container> = parse(br#"[{"Id":"3833fff78e16425b","Names":["/probec"],"State":"running","Mounts":[{"Type":"volume","Name":"probevol","Source":"/var/lib/docker/volumes/probevol/_data","Destination":"/data","Driver":"local","Mode":"z","RW":true,"Propagation":""},{"Type":"bind","Source":"/etc/x","Destination":"/x","Mode":"ro","RW":false}]},{"Id":"abcdef0123456789","Names":null,"Mounts":null}]"#).unwrap();
        assert_eq!(c[0].name(), "probec");
        assert_eq!(
            c[0].mounts[0],
            Mount { kind: "volume".into(), name: "probevol".into(), destination: "/data".into(), rw: true }
        );
        assert_eq!((c[0].mounts[1].name.as_str(), c[0].mounts[1].rw), ("", false));
        assert_eq!(c[1].name(), "abcdef012345");
        let df: DiskUsage = parse(br#"{"LayersSize":0,"Volumes":[{"Name":"a","UsageData":{"Size":4096,"RefCount":1}},{"Name":"b","UsageData":{"Size":-1,"RefCount":-1}},{"Name":"c"}]}"#).unwrap();
        assert_eq!(df.volumes[0].usage.as_ref().map(|u| u.size), Some(4096));
        assert_eq!(df.volumes[2].usage, None);
    }

    #[test]
    fn real_events() {
        // Captured from Docker 20.10.24+dfsg1: `docker volume create x; docker volume rm x`.
        let body = br#"{"Type":"volume","Action":"create","Actor":{"ID":"evtest","Attributes":{"driver":"local"}},"scope":"local","time":1796311944,"timeNano":1796311944971442447}
{"Type":"volume","Action":"destroy","Actor":{"ID":"evtest","Attributes":{"driver":"local"}},"scope":"local","time":1796311945,"timeNano":1796311945005844920}
"#;
        let e = parse_events(body).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].kind.as_str(), e[1].action.as_str()), ("volume", "destroy"));
        assert_eq!(e[1].time_nano, 1796311945005844920);
        assert_eq!(parse_events(b"").unwrap(), []);
        assert!(parse_events(br#"{"Type":"volume"} {"Type":"#).is_err());
        assert!(parse_events(b"[1]").is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse::<Version>(b"not json").is_err());
        assert!(parse::<Version>(b"[1,2]").is_err());
        assert!(parse::<Vec<Container>>(br#"{"Id":1}"#).is_err());
        assert!(parse::<Info>(br#"{"Driver":42}"#).is_err());
        assert!(parse::<Volumes>(br#"{"Volumes":[{"Name":"x""#).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse::<Version>(&body);
            let _ = parse::<Info>(&body);
            let _ = parse::<Volumes>(&body);
            let _ = parse::<Vec<Container>>(&body);
            let _ = parse::<DiskUsage>(&body);
            let _ = parse_events(&body);
        }

        #[test]
        fn json_like_never_panics(s in "[\\[{]([\"A-Za-z:,0-9 \\[\\]{}]|\"(Volumes|Mounts|RW|Names|Labels|Size)\":(null|true|1|\"x\"|\\[\\]|\\{\\})){0,20}[\\]}]?") {
            let _ = parse::<Volumes>(s.as_bytes());
            let _ = parse::<Vec<Container>>(s.as_bytes());
            let _ = parse::<DiskUsage>(s.as_bytes());
        }
    }
}
