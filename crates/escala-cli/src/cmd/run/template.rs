//! The command template: replacement strings (`{}` `{.}` `{/}` `{//}` `{/.}` `{#}` `{%}`
//! `{##}` `{n}` `{n.}`…), shell detection, and rendering a job's command line.

/// Characters that make a command line need a shell.
const SHELL_CHARS: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~', '\n', '{',
    '}',
];

/// Shell builtins and keywords: a command line starting with one needs the shell.
const SHELL_WORDS: &[&str] = &[
    "!", ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "declare", "eval", "exec",
    "exit", "export", "fg", "for", "function", "hash", "if", "jobs", "let", "local", "read", "readonly",
    "return", "set", "shift", "source", "time", "trap", "type", "typeset", "ulimit", "umask", "unset",
    "until", "wait", "while",
];

/// A parsed command template.
#[derive(Debug)]
pub(crate) struct Template {
    /// Tokens and the whitespace before each (kept as written, for the shell).
    tokens: Vec<(String, Vec<Seg>)>,
    /// The line has shell syntax: run it through the shell, values quoted.
    shell: bool,
    /// No template: each input is itself a command line.
    raw: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Rep(Rep),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rep {
    /// `{}` / `{n}` with a modifier (`None` position: all arguments).
    Arg(Option<usize>, Modifier),
    Seq,
    Slot,
    Total,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Modifier {
    None,
    NoExt,
    Base,
    Dir,
    BaseNoExt,
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rendered {
    /// The program and its arguments, run directly.
    Direct(Vec<String>),
    /// A line for `$SHELL -c`.
    Shell(String),
}

impl Rendered {
    /// The command as a shell line (for the joblog, `--dry-run` and messages).
    pub(crate) fn display(&self) -> String {
        match self {
            Rendered::Direct(argv) => shell_words::join(argv),
            Rendered::Shell(line) => line.clone(),
        }
    }
}

/// Per-job values for the replacement strings.
pub(crate) struct Vars<'a> {
    pub(crate) args: &'a [String],
    pub(crate) seq: usize,
    pub(crate) slot: usize,
    pub(crate) total: usize,
}

impl Template {
    /// Parses the command's words; `context` is `-X` (repeat the word around `{}`).
    pub(crate) fn parse(words: &[String]) -> Template {
        let raw = words.is_empty();
        let mut text = words.join(" ");
        let mut tokens = parse_tokens(&text);
        let has_rep = tokens.iter().flat_map(|(_, s)| s).any(|s| matches!(s, Seg::Rep(_)));
        if !has_rep {
            text.push_str(" {}");
            tokens = parse_tokens(&text);
        }
        let shell = tokens.iter().enumerate().any(|(i, (_, segs))| {
            segs.iter().any(|s| match s {
                Seg::Lit(l) => l.contains(SHELL_CHARS) || (i == 0 && l.contains('=')),
                Seg::Rep(_) => false,
            })
        }) || tokens.first().is_some_and(
            |(_, segs)| matches!(segs.as_slice(), [Seg::Lit(l)] if SHELL_WORDS.contains(&l.as_str())),
        );
        Template { tokens, shell, raw }
    }

    /// Whether `{##}` (the number of jobs) appears in the template or in `text` (a
    /// `--tagstring`): then every input must be read before the first job starts.
    pub(crate) fn uses_total(&self, text: Option<&str>) -> bool {
        let total = |segs: &[Seg]| segs.contains(&Seg::Rep(Rep::Total));
        self.tokens.iter().any(|(_, segs)| total(segs))
            || text.is_some_and(|t| parse_tokens(t).iter().any(|(_, segs)| total(segs)))
    }

    /// Builds the job's command; `context` repeats a word around a many-valued `{}` (`-X`).
    pub(crate) fn render(&self, v: &Vars<'_>, context: bool) -> Rendered {
        if self.raw {
            let line = v.args.join(" ");
            let first = line.split_whitespace().next().unwrap_or("");
            if line.contains(SHELL_CHARS) || SHELL_WORDS.contains(&first) || first.contains('=') {
                return Rendered::Shell(line);
            }
            return Rendered::Direct(line.split_whitespace().map(str::to_string).collect());
        }
        if self.shell {
            let mut line = String::new();
            for (space, segs) in &self.tokens {
                line.push_str(space);
                let words = expand(segs, v, context, &|s| shell_words::quote(s).into_owned());
                line.push_str(&words.join(" "));
            }
            Rendered::Shell(line)
        } else {
            Rendered::Direct(
                self.tokens.iter().flat_map(|(_, segs)| expand(segs, v, context, &str::to_string)).collect(),
            )
        }
    }

    /// Renders a plain string (a `--tagstring`): values unquoted, joined by spaces.
    pub(crate) fn render_text(text: &str, v: &Vars<'_>) -> String {
        let mut out = String::new();
        for (space, segs) in parse_tokens(text) {
            out.push_str(&space);
            out.push_str(&expand(&segs, v, false, &str::to_string).join(" "));
        }
        out
    }
}

/// Splits at whitespace, keeping the whitespace before each token.
fn parse_tokens(text: &str) -> Vec<(String, Vec<Seg>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
        let (space, tail) = rest.split_at(start);
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let (tok, tail) = tail.split_at(end);
        if tok.is_empty() {
            break;
        }
        out.push((space.to_string(), parse_segs(tok)));
        rest = tail;
    }
    out
}

/// Splits a token into literal text and replacement strings.
fn parse_segs(tok: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut lit = String::new();
    let mut rest = tok;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| open + c);
        let rep = close.and_then(|c| parse_rep(&rest[open + 1..c]));
        match (rep, close) {
            (Some(rep), Some(c)) => {
                lit.push_str(&rest[..open]);
                if !lit.is_empty() {
                    segs.push(Seg::Lit(std::mem::take(&mut lit)));
                }
                segs.push(Seg::Rep(rep));
                rest = &rest[c + 1..];
            }
            _ => {
                lit.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        segs.push(Seg::Lit(lit));
    }
    segs
}

/// The inside of `{…}`, if it is a replacement string.
fn parse_rep(inner: &str) -> Option<Rep> {
    match inner {
        "#" => return Some(Rep::Seq),
        "%" => return Some(Rep::Slot),
        "##" => return Some(Rep::Total),
        _ => {}
    }
    let digits = inner.len() - inner.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let pos =
        if digits == 0 { None } else { Some(inner[..digits].parse::<usize>().ok().filter(|&n| n > 0)?) };
    let modifier = match &inner[digits..] {
        "" => Modifier::None,
        "." => Modifier::NoExt,
        "/" => Modifier::Base,
        "//" => Modifier::Dir,
        "/." => Modifier::BaseNoExt,
        _ => return None,
    };
    Some(Rep::Arg(pos, modifier))
}

/// The words one token becomes. A many-valued `{}` splits the token (its text before goes
/// on the first value, the text after on the last), or with `context` repeats it per value.
fn expand(segs: &[Seg], v: &Vars<'_>, context: bool, quote: &dyn Fn(&str) -> String) -> Vec<String> {
    let many = segs.iter().position(|s| matches!(s, Seg::Rep(Rep::Arg(None, _))));
    if let (true, Some(_)) = (context, many) {
        let one = |arg: &String| {
            let v1 = Vars { args: std::slice::from_ref(arg), ..*v };
            expand(segs, &v1, false, quote).join(" ")
        };
        return v.args.iter().map(one).collect();
    }
    let mut words = vec![String::new()];
    let mut any = false;
    for s in segs {
        match s {
            Seg::Lit(l) => {
                any = true;
                if let Some(w) = words.last_mut() {
                    w.push_str(l);
                }
            }
            Seg::Rep(r) => {
                let vals = values(*r, v);
                any |= !vals.is_empty();
                for (i, val) in vals.iter().enumerate() {
                    if i > 0 {
                        words.push(String::new());
                    }
                    if let Some(w) = words.last_mut() {
                        w.push_str(&quote(val));
                    }
                }
            }
        }
    }
    // A word made only of missing arguments (`{3}` with two) disappears, as in the shell.
    if !any {
        words.clear();
    }
    words
}

fn values(r: Rep, v: &Vars<'_>) -> Vec<String> {
    match r {
        Rep::Seq => vec![v.seq.to_string()],
        Rep::Slot => vec![v.slot.to_string()],
        Rep::Total => vec![v.total.to_string()],
        Rep::Arg(None, m) => v.args.iter().map(|a| modify(a, m)).collect(),
        Rep::Arg(Some(n), m) => v.args.get(n - 1).map(|a| modify(a, m)).into_iter().collect(),
    }
}

fn modify(a: &str, m: Modifier) -> String {
    let base = |s: &str| s.rsplit_once('/').map_or(s, |(_, b)| b).to_string();
    let no_ext = |s: &str| match s.rfind(['.', '/']) {
        Some(i) if s.as_bytes()[i] == b'.' && i > 0 && s.as_bytes()[i - 1] != b'/' => s[..i].to_string(),
        _ => s.to_string(),
    };
    match m {
        Modifier::None => a.to_string(),
        Modifier::NoExt => no_ext(a),
        Modifier::Base => base(a),
        Modifier::Dir => a.rsplit_once('/').map_or(".".to_string(), |(d, _)| d.to_string()),
        Modifier::BaseNoExt => no_ext(&base(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(words: &[&str], args: &[&str], context: bool) -> Rendered {
        let t = Template::parse(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        t.render(&Vars { args: &args, seq: 7, slot: 2, total: 9 }, context)
    }

    #[test]
    fn modifiers_match_gnu_parallel() {
        let r = render(&["echo", "{}", "{.}", "{/}", "{//}", "{/.}"], &["dir/sub/file.tar.gz"], false);
        assert_eq!(r.display(), "echo dir/sub/file.tar.gz dir/sub/file.tar file.tar.gz dir/sub file.tar");
        assert_eq!(render(&["echo", "{//}", "{.}"], &["file"], false).display(), "echo . file");
    }

    #[test]
    fn appends_when_no_replacement_string_and_detects_the_shell() {
        assert_eq!(render(&["echo"], &["a b"], false), Rendered::Direct(vec!["echo".into(), "a b".into()]));
        assert_eq!(render(&["echo {} | wc"], &["a b"], false), Rendered::Shell("echo 'a b' | wc".into()));
        assert_eq!(render(&["echo", "{#}-{%}/{##}"], &[], false).display(), "echo 7-2/9");
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Template::parse(&words(&["echo", "{##}"])).uses_total(None));
        assert!(Template::parse(&words(&["echo"])).uses_total(Some("{#}/{##}")));
        assert!(!Template::parse(&words(&["echo", "{#}"])).uses_total(Some("{}")));
    }

    #[test]
    fn many_values_split_or_repeat_the_word() {
        assert_eq!(render(&["echo", "x{}y"], &["a", "b"], false).display(), "echo xa by");
        assert_eq!(render(&["echo", "x{}y"], &["a", "b"], true).display(), "echo xay xby");
        assert_eq!(render(&["echo", "{2}", "{1}"], &["a", "b"], false).display(), "echo b a");
    }
}
