//! `kad node --config FILE`: every [`Config`] setting in a TOML file.
//!
//! The file is a flat table named after the builder's setters; each setting is optional
//! (what is left out keeps its default) and a name that is not a setting is an error, so a
//! typo never passes silently. Durations are seconds (a float), as on the command line.
//!
//! ```toml
//! codec = "bencode"
//! k = 16
//! query_timeout = 0.5
//! max_records = 50000
//! ```
//!
//! The settings come from kad-core's one list (`kad_core::config_settings!`, beside
//! `Config`): the struct, the way a file is applied to a builder and the way a config is
//! printed (`--print-config`) are all generated from it, and a test checks that the list
//! names exactly the fields of `Config`.

use std::time::Duration;

use kad_tokio::{Builder, Codec, Config};
use serde::{Deserialize, Serialize};

/// A setting's type as the builder takes it, and as the file holds it.
trait Setting: Sized {
    /// What TOML holds: seconds for a duration, a name for the codec.
    type Raw: Serialize + for<'de> Deserialize<'de>;
    fn from_raw(name: &str, raw: Self::Raw) -> Result<Self, String>;
    fn to_raw(&self) -> Self::Raw;
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            type Raw = $t;
            fn from_raw(_: &str, raw: $t) -> Result<$t, String> {
                Ok(raw)
            }
            fn to_raw(&self) -> $t {
                *self
            }
        }
    )*};
}
plain!(usize, u32, bool);

/// Seconds in the file: `2`, `0.5` (TOML tells integers from floats; both are fine).
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Secs {
    Whole(u64),
    Fraction(f64),
}

impl Setting for Duration {
    type Raw = Secs;
    fn from_raw(name: &str, secs: Secs) -> Result<Duration, String> {
        match secs {
            Secs::Whole(s) => Ok(Duration::from_secs(s)),
            Secs::Fraction(s) => {
                Duration::try_from_secs_f64(s).map_err(|_| format!("{name}: {s} is not a duration"))
            }
        }
    }
    fn to_raw(&self) -> Secs {
        match self.subsec_nanos() {
            0 => Secs::Whole(self.as_secs()),
            _ => Secs::Fraction(self.as_secs_f64()),
        }
    }
}

impl Setting for Codec {
    type Raw = String;
    fn from_raw(name: &str, raw: String) -> Result<Codec, String> {
        raw.parse().map_err(|e| format!("{name}: {e}"))
    }
    fn to_raw(&self) -> String {
        self.to_string()
    }
}

macro_rules! config_file {
    ($($(#[$m:meta])* $name:ident: $ty:ty $(as $alias:literal)?),* $(,)?) => {
        /// The settings of a `--config` file; `None` keeps the default.
        #[derive(Debug, Default, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct ConfigFile {
            $(
                $(#[$m])*
                $(#[serde(alias = $alias)])?
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $name: Option<<$ty as Setting>::Raw>,
            )*
        }

        impl ConfigFile {
            /// The builder with this file's settings on top.
            pub fn apply(self, mut b: Builder) -> Result<Builder, String> {
                $(
                    if let Some(raw) = self.$name {
                        b = b.$name(<$ty as Setting>::from_raw(stringify!($name), raw)?);
                    }
                )*
                Ok(b)
            }

            /// Every setting of `config`, as a file would give it.
            pub fn of(config: &Config) -> ConfigFile {
                ConfigFile {
                    $($name: Some(config.$name().to_raw()),)*
                }
            }
        }

        #[cfg(test)]
        const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

kad_core::config_settings!(config_file {});

impl ConfigFile {
    /// Reads and parses FILE.
    pub fn load(path: &std::path::Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// `config` as a complete TOML file.
    pub fn print(config: &Config) -> String {
        toml::to_string(&ConfigFile::of(config)).unwrap_or_else(|e| format!("# {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names of `Config`, from its derived `Debug`: `Config { codec: Json, k: 20, ... }`.
    fn config_fields() -> Vec<String> {
        let debug = format!("{:?}", Config::default());
        let inner = debug
            .strip_prefix("Config { ")
            .and_then(|s| s.strip_suffix(" }"))
            .expect("Config's Debug is a struct");
        let mut names: Vec<String> = inner
            .split(", ")
            .map(|f| f.split(':').next().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_file_names_every_config_field() {
        let mut ours: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        ours.sort();
        assert_eq!(
            ours,
            config_fields(),
            "add the new Config field to kad_core::config_settings!"
        );
    }

    #[test]
    fn printed_config_reads_back_to_the_same_config() {
        let config = Config::builder()
            .k(7)
            .codec(Codec::Bencode)
            .query_timeout(Duration::from_millis(250))
            .pad_requests(false)
            .build()
            .unwrap();
        let text = ConfigFile::print(&config);
        let file: ConfigFile = toml::from_str(&text).unwrap();
        let back = file.apply(Builder::default()).unwrap();
        assert_eq!(back.build_config().unwrap(), config);
    }

    #[test]
    fn unknown_names_and_bad_values_are_errors() {
        assert!(toml::from_str::<ConfigFile>("kk = 3").is_err());
        let file: ConfigFile = toml::from_str("query_timeout = -1.0").unwrap();
        assert!(file.apply(Builder::default()).is_err());
        let file: ConfigFile = toml::from_str("codec = \"xml\"").unwrap();
        assert!(file.apply(Builder::default()).is_err());
        // The Python names of two settings are accepted too.
        let file: ConfigFile = toml::from_str("key_expiry_seconds = 60").unwrap();
        let config = file
            .apply(Builder::default())
            .unwrap()
            .build_config()
            .unwrap();
        assert_eq!(config.key_expiry(), Duration::from_secs(60));
    }
}
