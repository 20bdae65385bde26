//! Manifest inputs: the files, directories and stdin the user names, read with a size cap, split into
//! documents with the line each starts on, parsed (YAML or JSON), and `List`s opened into items.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use serde_json::Value;

/// The largest manifest file (or stdin) read: a rendered chart of hundreds of objects is a few MiB.
pub const MAX_INPUT: u64 = 64 << 20;
/// The most files a run reads (directories are walked recursively).
pub const MAX_FILES: usize = 100_000;
/// How deep directories are walked.
const MAX_DEPTH: usize = 64;

/// One input: a file, or stdin (named `-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    /// The name results carry: the path as found, or `-`.
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "-".into(),
        }
    }
}

/// Whether a file found in a directory is a manifest, by its name.
fn is_manifest(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// The inputs the paths name, in order: a file as named (any name), a directory's `*.yaml`, `*.yml`
/// and `*.json` recursively in name order (symlinked directories are not followed), `-` for stdin.
/// A path that does not exist is the user's mistake: an error (exit 2).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            walk(p, 0, &mut out)?;
        } else {
            out.push(Input::File(p.clone()));
        }
        if out.len() > MAX_FILES {
            bail!("more than {MAX_FILES} manifest files: name fewer");
        }
    }
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<Input>) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: directories nested deeper than {MAX_DEPTH}",
            dir.display()
        );
    }
    let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.path(), e.file_type().ok()?)))
        .take(MAX_FILES + 1)
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, ft) in entries {
        if ft.is_dir() {
            walk(&path, depth + 1, out)?;
        } else if is_manifest(&path) && (ft.is_file() || ft.is_symlink()) {
            out.push(Input::File(path));
        }
        if out.len() > MAX_FILES {
            bail!("more than {MAX_FILES} manifest files: name fewer");
        }
    }
    Ok(())
}

/// Reads an input as text: a regular file or stdin, at most [`MAX_INPUT`] bytes, UTF-8. The error is
/// the reason, for an `error` result of that file.
pub fn read(input: &Input) -> Result<String, String> {
    let bytes = match input {
        Input::Stdin => capped(io::stdin().lock(), "stdin")?,
        Input::File(p) => {
            // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(p)
                .map_err(|e| e.to_string())?;
            let meta = f.metadata().map_err(|e| e.to_string())?;
            let ft = meta.file_type();
            if !ft.is_file() {
                let kind = if ft.is_fifo() {
                    "a FIFO"
                } else if ft.is_socket() {
                    "a socket"
                } else if ft.is_char_device() || ft.is_block_device() {
                    "a device"
                } else {
                    "not a regular file"
                };
                return Err(format!("is {kind}: only regular files are read"));
            }
            if meta.len() > MAX_INPUT {
                return Err(too_big("the file"));
            }
            capped::<File>(f, "the file")?
        }
    };
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("line {line}: not UTF-8 text")
    })
}

fn capped<R: Read>(r: R, what: &str) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    r.take(MAX_INPUT + 1)
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    if data.len() as u64 > MAX_INPUT {
        return Err(too_big(what));
    }
    Ok(data)
}

fn too_big(what: &str) -> String {
    format!(
        "{what} is larger than {} MiB, the most read from one input",
        MAX_INPUT >> 20
    )
}

/// One document (or List item) of an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// 1-based line the document starts on (its first line that is not blank, a comment or `---`).
    pub line: usize,
    /// 0-based index among the input's non-empty documents; `D.I` for item I of a List in document D.
    pub document: String,
    /// The parsed object, or the parser's message (its line is in it, counted in the whole input).
    pub body: Result<Value, String>,
}

/// One document's text and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// 1-based line of the chunk's first line in the input.
    pub first_line: usize,
    /// 1-based line of its first content line.
    pub line: usize,
    pub text: &'a str,
}

/// A document marker line: `---` or `...` at column 0, alone or followed by a space or tab.
fn marker(line: &str, m: &str) -> bool {
    line.strip_prefix(m)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Splits a YAML stream into its non-empty documents, each with the line it starts on.
///
/// serde-saphyr parses a stream (`from_multiple`) but drops empty documents without saying which and
/// fails the whole stream at the first error, and its values carry no position unless every field is
/// `Spanned`; so the boundaries are found here and each document is parsed alone, which also lets one
/// malformed document cost only itself. YAML makes this exact: a line starting with `---` or `...`
/// followed by a space, tab or end of line ends any document, block scalars included (the spec's
/// `c-forbidden`: such a line can never be content).
pub fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    let mut start = 0usize; // byte offset of the current chunk
    let mut first_line = 1usize;
    let mut content: Option<usize> = None; // line of its first content line
    let mut opened = false; // whether the current chunk has its `---` already
    let mut offset = 0usize;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches(['\n', '\r']);
        let next = offset + raw.len();
        if marker(line, "---") {
            if let Some(c) = content {
                out.push(Chunk {
                    first_line,
                    line: c,
                    text: &text[start..offset],
                });
            }
            // A new document starts here; what came before it in this chunk was either a whole
            // document (pushed), an empty one (`---` with nothing after it: dropped), or only
            // comments and directives (kept: directives belong to the document they precede).
            if content.is_some() || opened {
                start = offset;
                first_line = n;
                content = None;
            }
            opened = true;
            // Content on the marker line itself (`--- |`, `--- {a: 1}`, `--- !tag`) starts there.
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                content.get_or_insert(n);
            }
        } else if marker(line, "...") {
            if let Some(c) = content.take() {
                out.push(Chunk {
                    first_line,
                    line: c,
                    text: &text[start..next],
                });
            }
            opened = false;
            start = next;
            first_line = n + 1;
        } else {
            let t = line.trim_start();
            let directive = line.starts_with('%') && content.is_none();
            if !t.is_empty() && !t.starts_with('#') && !directive {
                content.get_or_insert(n);
            }
        }
        offset = next;
    }
    if let Some(c) = content {
        out.push(Chunk {
            first_line,
            line: c,
            text: &text[start..],
        });
    }
    out
}

/// The YAML parser's options: its default budget (aliases, depth, nodes) guards against alias bombs.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::Options::default()
}

/// Parses one YAML document; an error names its line in the whole input.
fn parse_yaml<T: serde::de::DeserializeOwned>(chunk: &Chunk<'_>) -> Result<T, String> {
    serde_saphyr::from_str_with_options::<T>(chunk.text, yaml_options()).map_err(|e| {
        let msg = first_line_of(&e.to_string());
        match e.location() {
            Some(loc) if loc.line() > 0 => {
                let line = chunk.first_line + loc.line() as usize - 1;
                format!(
                    "line {line} column {}: {}",
                    loc.column(),
                    strip_position(&msg)
                )
            }
            _ => format!("line {}: {msg}", chunk.line),
        }
    })
}

/// What a verdict reads of an object: its identity and, for a List, its items' identities. Parsing
/// only this (the rest of the document is scanned, not built) is what makes judging 10,000 documents
/// fast; `--convert` needs the whole object and parses it all.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: Option<Value>,
    kind: Option<Value>,
    metadata: Option<HeadMeta>,
    items: Option<Vec<Head>>,
}

#[derive(serde::Deserialize)]
struct HeadMeta {
    name: Option<Value>,
    namespace: Option<Value>,
    #[serde(rename = "generateName")]
    generate_name: Option<Value>,
}

impl Head {
    fn into_value(self) -> Value {
        let mut o = serde_json::Map::new();
        let put = |o: &mut serde_json::Map<String, Value>, k: &str, v: Option<Value>| {
            if let Some(v) = v {
                o.insert(k.into(), v);
            }
        };
        put(&mut o, "apiVersion", self.api_version);
        put(&mut o, "kind", self.kind);
        if let Some(m) = self.metadata {
            let mut mo = serde_json::Map::new();
            put(&mut mo, "name", m.name);
            put(&mut mo, "namespace", m.namespace);
            put(&mut mo, "generateName", m.generate_name);
            o.insert("metadata".into(), Value::Object(mo));
        }
        if let Some(items) = self.items {
            o.insert(
                "items".into(),
                Value::Array(items.into_iter().map(Head::into_value).collect()),
            );
        }
        Value::Object(o)
    }
}

/// One YAML document: whole (`full`), or only its [`Head`]; a document that is no mapping (or whose
/// head fields have other shapes) is parsed whole, so its verdict sees what it is.
fn parse_doc(chunk: &Chunk<'_>, full: bool) -> Result<Value, String> {
    if !full && let Ok(h) = parse_yaml::<Option<Head>>(chunk) {
        return Ok(h.map_or(Value::Null, Head::into_value));
    }
    parse_yaml::<Value>(chunk)
}

/// The first line of a parser message (saphyr appends a source snippet with chunk-relative lines).
fn first_line_of(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// A message without the parser's own `error: line N column M: ` or ` at line N column M`
/// (chunk-relative, so misleading here).
fn strip_position(msg: &str) -> String {
    let mut m = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some(rest) = m.strip_prefix("line ")
        && let Some((pos, tail)) = rest.split_once(": ")
        && pos
            .split(" column ")
            .all(|n| n.chars().all(|c| c.is_ascii_digit()))
    {
        m = tail;
    }
    let cut = m
        .find(" at line ")
        .or_else(|| m.find(" at position "))
        .unwrap_or(m.len());
    m[..cut].trim_end_matches([':', ' ']).to_string()
}

/// Whether the text is JSON rather than YAML: its first non-blank character opens an object.
fn looks_json(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{')
}

/// The documents of an input's text: YAML (multi-document) or a JSON stream of objects; `List`s are
/// opened into their items. Empty documents are skipped.
pub fn documents(text: &str) -> Vec<Doc> {
    documents_with(text, true)
}

/// [`documents`], with only what a verdict reads of each YAML object unless `full`.
pub fn documents_with(text: &str, full: bool) -> Vec<Doc> {
    let mut raw: Vec<(usize, Result<Value, String>)> = Vec::new();
    if looks_json(text) {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        // Lines counted incrementally: (byte offset, line there).
        let (mut pos, mut line) = (0usize, 1usize);
        loop {
            let at = stream.byte_offset();
            let rest = &text[at..];
            let begin = at + (rest.len() - rest.trim_start().len());
            line += text[pos..begin].bytes().filter(|&b| b == b'\n').count();
            pos = begin;
            match stream.next() {
                None => break,
                Some(Ok(v)) => raw.push((line, Ok(v))),
                Some(Err(e)) => {
                    raw.push((
                        e.line().max(line),
                        Err(format!("line {} column {}: {e}", e.line(), e.column())),
                    ));
                    break;
                }
            }
        }
    } else {
        for c in split(text) {
            match parse_doc(&c, full) {
                Ok(Value::Null) => {}
                r => raw.push((c.line, r)),
            }
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    for (d, (line, body)) in raw.into_iter().enumerate() {
        match body {
            Ok(Value::Object(mut o)) if is_list(&o) => {
                let Some(Value::Array(items)) = o.remove("items") else {
                    unreachable!("is_list checked items")
                };
                for (i, item) in items.into_iter().enumerate() {
                    out.push(Doc {
                        line,
                        document: format!("{d}.{i}"),
                        body: Ok(item),
                    });
                }
            }
            body => out.push(Doc {
                line,
                document: d.to_string(),
                body,
            }),
        }
    }
    out
}

/// `kind: List` or any `*List` kind with an `items` array.
fn is_list(o: &serde_json::Map<String, Value>) -> bool {
    o.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && matches!(o.get("items"), Some(Value::Array(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(usize, String)> {
        documents(text)
            .into_iter()
            .map(|d| (d.line, d.document))
            .collect()
    }

    #[test]
    fn documents_start_where_their_content_starts() {
        let text = "# a comment\n---\napiVersion: v1\nkind: A\n---\n\n---\n# only a comment\n---\n\napiVersion: v1\nkind: B\n...\n---\n";
        assert_eq!(
            lines(text),
            vec![(3, "0".to_string()), (11, "1".to_string())]
        );
    }

    #[test]
    fn an_empty_explicit_document_is_dropped_and_messages_name_the_file_line() {
        let text = "kind: A\n---\n---\n# comment\nkind: B\n";
        assert_eq!(
            lines(text),
            vec![(1, "0".to_string()), (5, "1".to_string())]
        );
        let d = documents("kind: A\n---\nkind: B\nx: [open\n");
        let e = d[1].body.as_ref().unwrap_err();
        assert!(
            e.starts_with("line 4 column") && !e.contains("line 2"),
            "{e}"
        );
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn markers_inside_block_scalars_end_the_document_as_yaml_says() {
        // An indented `---` is content of the block scalar; a column-0 one ends the document.
        let text = "kind: A\ndata: |\n  ---\n  x\n---\nkind: B\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].body.as_ref().unwrap()["data"], "---\nx\n");
        assert_eq!(docs[1].line, 6);
        // `----` or `---x` is not a marker.
        let c = split("a: |\n----\n");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn anchors_directives_and_content_on_the_marker_line() {
        let text = "%YAML 1.2\n---\nbase: &b {app: web}\nother: *b\n--- {kind: X}\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(docs[0].line, 3);
        assert_eq!(docs[0].body.as_ref().unwrap()["other"]["app"], "web");
        assert_eq!(docs[1].line, 5);
        assert_eq!(docs[1].body.as_ref().unwrap()["kind"], "X");
    }

    #[test]
    fn a_malformed_document_names_its_line_in_the_file_and_costs_only_itself() {
        let text = "kind: A\n---\nkind: B\nmetadata:\n  name: [unclosed\n---\nkind: C\n";
        let docs = documents(text);
        assert_eq!(docs.len(), 3);
        let err = docs[1].body.as_ref().unwrap_err();
        assert!(
            err.starts_with("line 5") || err.starts_with("line 6"),
            "{err}"
        );
        assert_eq!(docs[2].body.as_ref().unwrap()["kind"], "C");
    }

    #[test]
    fn lists_open_into_items_and_json_streams_parse() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n- kind: B\n";
        assert_eq!(
            lines(text),
            vec![(1, "0.0".to_string()), (1, "0.1".to_string())]
        );
        let json = "\n\n{\"kind\": \"A\"}\n{\"kind\": \"DeploymentList\", \"items\": [{\"kind\": \"B\"}]}\n";
        assert_eq!(
            lines(json),
            vec![(3, "0".to_string()), (4, "1.0".to_string())]
        );
        let bad = "{\"kind\": \n\n [}";
        let d = documents(bad);
        assert!(
            d[0].body.as_ref().unwrap_err().starts_with("line 3"),
            "{d:?}"
        );
    }

    #[test]
    fn an_alias_bomb_is_an_error_not_a_hang() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            text.push_str(&format!(
                "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                (b'a' + i) as char,
                (b'a' + i) as char,
                p = (b'a' + i - 1) as char
            ));
        }
        let d = documents(&text);
        assert!(d[0].body.is_err(), "an alias bomb parsed");
    }

    #[test]
    fn the_head_is_what_a_verdict_reads_of_the_whole() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1beta2\n  kind: Deployment\n  metadata: {name: a, namespace: b, labels: {x: y}}\n  spec: {replicas: 1}\n---\n- not\n- an object\n---\napiVersion: 3\nkind: X\n";
        let full = documents_with(text, true);
        let head = documents_with(text, false);
        assert_eq!(full.len(), head.len());
        for (f, h) in full.iter().zip(&head) {
            assert_eq!((f.line, &f.document), (h.line, &h.document));
            let (f, h) = (f.body.as_ref().unwrap(), h.body.as_ref().unwrap());
            for p in [
                "/apiVersion",
                "/kind",
                "/metadata/name",
                "/metadata/namespace",
            ] {
                assert_eq!(f.pointer(p), h.pointer(p), "{p}");
            }
            assert_eq!(f.is_object(), h.is_object());
        }
        assert!(head[0].body.as_ref().unwrap().get("spec").is_none());
    }

    #[test]
    fn unquoted_numeric_keys_become_strings() {
        let d = documents("kind: ConfigMap\ndata:\n  80: default/web:80\n");
        assert_eq!(d[0].body.as_ref().unwrap()["data"]["80"], "default/web:80");
    }
}
