//! Where ffmpeg reads a source from: a local file, or the object store over HTTP with range
//! requests, so a part of a split job reads its span of the source instead of all of it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// A source ffmpeg reads. Untrusted files can name other files or URLs (playlists, concat
/// lists, MP4 references), so what ffmpeg may open is held to the one input: `file:` only
/// for a local file; for a URL only HTTP(S) and its transports, with the container's
/// demuxer forced to the one the probe of the downloaded copy found (`-f`, and nothing else
/// allowed by `-format_whitelist`), so no demuxer that opens further URLs runs.
#[derive(Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    /// A (presigned) object store URL and the demuxer to read it with.
    Remote {
        url: String,
        demuxer: String,
    },
}

impl std::fmt::Debug for Input {
    /// A presigned URL is a credential: only its scheme is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::File(path) => write!(f, "Input::File({})", path.display()),
            Input::Remote { demuxer, .. } => write!(f, "Input::Remote({demuxer} over http)"),
        }
    }
}

impl Input {
    pub fn file(path: &Path) -> Self {
        Input::File(path.to_path_buf())
    }

    /// ffmpeg's input options that say what may be opened, then `-i` and the input. Options
    /// that belong before `-i` (a seek) go before these.
    pub(crate) fn args(&self) -> Vec<OsString> {
        match self {
            Input::File(path) => {
                // `file:` keeps ffmpeg from reading a path as another protocol (`http:…`, `pipe:`).
                let mut url = OsString::from("file:");
                url.push(path.as_os_str());
                vec!["-protocol_whitelist".into(), "file".into(), "-i".into(), url]
            }
            Input::Remote { url, demuxer } => [
                "-protocol_whitelist",
                "http,https,tcp,tls",
                // A dropped connection mid-part resumes at the offset it reached.
                "-reconnect",
                "1",
                "-reconnect_on_network_error",
                "1",
                "-reconnect_delay_max",
                "4",
                "-f",
                demuxer,
                "-format_whitelist",
                demuxer,
                "-i",
                url,
            ]
            .into_iter()
            .map(OsString::from)
            .collect(),
        }
    }
}

/// The text error messages must not show (the server's path, the signed URL).
impl AsRef<OsStr> for Input {
    fn as_ref(&self) -> &OsStr {
        match self {
            Input::File(path) => path.as_os_str(),
            Input::Remote { url, .. } => OsStr::new(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_input_forces_its_demuxer_and_allows_only_http() {
        let input = Input::Remote { url: "http://s3/b/k?X-Amz-Signature=s".into(), demuxer: "mov,mp4,m4a".into() };
        let args: Vec<String> = input.args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("-protocol_whitelist"), "http,https,tcp,tls");
        assert_eq!(after("-f"), "mov,mp4,m4a");
        assert_eq!(after("-format_whitelist"), "mov,mp4,m4a");
        assert_eq!(args.last().unwrap(), "http://s3/b/k?X-Amz-Signature=s");
        assert!(!format!("{input:?}").contains("Signature"), "the URL is a credential: not in Debug");
    }

    #[test]
    fn a_file_input_allows_only_files() {
        let args = Input::file(Path::new("/w/source")).args();
        assert_eq!(args, ["-protocol_whitelist", "file", "-i", "file:/w/source"].map(OsString::from));
    }
}
