//! A text analyzer (build/lib/librust_words.so): the request is a text,
//! the answer its `k` most frequent words, one `count word` line each, most
//! frequent first (ties in alphabetical order), after a `total distinct`
//! line.  Words are runs of letters and digits, lowercased.  CPU work that
//! would stall the nginx event loop if it ran in Lua.
//!
//! ```lua
//! local rt = require("resty.hotffi").load("rust_words", "k=3 threads=2")
//! local ok, res = rt:count("the cat and the hat and the bat")
//! -- res: "8 5\n3 the\n2 and\n1 bat\n"
//! ```
//!
//! cfg: space-separated `k=N` (default 10) and `threads=N` (default 2).

use std::collections::HashMap;
use std::fmt::Write;

use hotffi::{Error, Request, Runtime};

struct Config {
    k: usize,
    threads: usize,
}

fn parse(cfg: Option<&str>) -> Result<Config, Error> {
    let mut c = Config { k: 10, threads: 2 };
    for item in cfg.unwrap_or("").split_whitespace() {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let n: usize = value
            .parse()
            .map_err(|_| format!("bad configuration {item:?}: {key}=N expected"))?;
        match key {
            "k" if n > 0 => c.k = n,
            "threads" if n > 0 && n <= 64 => c.threads = n,
            _ => return Err(format!("bad configuration {item:?}").into()),
        }
    }
    Ok(c)
}

fn top_words(text: &str, k: usize) -> String {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        total += 1;
    }

    let mut ranked: Vec<(&String, &u64)> = counts.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));

    let mut out = format!("{} {}\n", total, counts.len());
    for (word, n) in ranked.into_iter().take(k) {
        let _ = writeln!(out, "{n} {word}");
    }
    out
}

// thread: the nginx event loop: parse, start the threads, return.
fn init(cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
    let c = parse(cfg)?;
    let k = c.k;
    rt.serve(c.threads, move |req: &Request| {
        let text =
            std::str::from_utf8(req).map_err(|e| Error::new(2, format!("not UTF-8: {e}")))?;
        Ok(top_words(text, k).into_bytes())
    })
}

hotffi::export_runtime!(init);
