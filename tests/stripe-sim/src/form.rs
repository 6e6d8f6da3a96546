//! Stripe's form encoding: `metadata[key]=v`, `items[0][price]=p`, `expand[]=x`, parsed into a
//! JSON tree so handlers read parameters the way Stripe documents them.

use serde_json::{Map, Value};

/// Parses an `application/x-www-form-urlencoded` body or query string into a JSON object whose
/// leaves are strings. Objects whose keys are all integers become arrays (ordered by index), and
/// `[]` appends, as Stripe's Rack-style parser does.
pub fn parse(input: &str) -> Result<Value, String> {
    let mut root = Value::Object(Map::new());
    for pair in input.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (k, v),
            None => (pair, ""),
        };
        let key = decode(k)?;
        let value = decode(v)?;
        let path = split_key(&key)?;
        insert(&mut root, &path, value)?;
    }
    Ok(arrayify(root))
}

fn decode(s: &str) -> Result<String, String> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "Invalid UTF-8 in request parameters".to_string())
}

/// `a[b][0][]` → ["a", "b", "0", ""].
fn split_key(key: &str) -> Result<Vec<String>, String> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return Err(format!("Invalid parameter name: {key}"));
    }
    let mut out = vec![head.to_string()];
    while !rest.is_empty() {
        if !rest.starts_with('[') {
            return Err(format!("Invalid parameter name: {key}"));
        }
        let end = rest
            .find(']')
            .ok_or_else(|| format!("Invalid parameter name: {key}"))?;
        out.push(rest[1..end].to_string());
        rest = &rest[end + 1..];
    }
    Ok(out)
}

fn insert(node: &mut Value, path: &[String], value: String) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    if first.is_empty() {
        // `[]`: append to an array held under a synthetic increasing key.
        let Value::Object(map) = node else {
            return Err("Invalid array parameter".into());
        };
        let idx = format!("{}", map.len());
        if rest.is_empty() {
            map.insert(idx, Value::String(value));
            return Ok(());
        }
        let child = map.entry(idx).or_insert_with(|| Value::Object(Map::new()));
        return insert(child, rest, value);
    }
    let Value::Object(map) = node else {
        return Err(format!(
            "Invalid parameter: `{first}` mixes a value and a hash"
        ));
    };
    if rest.is_empty() {
        map.insert(first.clone(), Value::String(value));
        return Ok(());
    }
    let child = map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        return Err(format!(
            "Invalid parameter: `{first}` mixes a value and a hash"
        ));
    }
    insert(child, rest, value)
}

fn arrayify(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let all_numeric = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            if all_numeric {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .filter_map(|(k, v)| k.parse::<usize>().ok().map(|i| (i, arrayify(v))))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, arrayify(v))).collect())
            }
        }
        other => other,
    }
}

/// Encodes a JSON tree back into Stripe's form syntax (used by the scenario driver and tests).
pub fn encode(params: &Value) -> String {
    let mut out = Vec::new();
    encode_into(&mut out, String::new(), params);
    out.join("&")
}

fn encode_into(out: &mut Vec<String>, prefix: String, v: &Value) {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}[{k}]")
                };
                encode_into(out, key, v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                encode_into(out, format!("{prefix}[{i}]"), v);
            }
        }
        Value::String(s) => out.push(format!("{}={}", enc(&prefix), enc(s))),
        Value::Null => out.push(format!("{}=", enc(&prefix))),
        other => out.push(format!("{}={}", enc(&prefix), enc(&other.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_brackets() {
        let v = parse("metadata[order]=42&items[0][price]=price_1&items[0][quantity]=2&items[1][price]=p2&expand[]=a&expand[]=b.c&name=Jane+Doe%21").unwrap();
        assert_eq!(
            v,
            json!({"metadata":{"order":"42"},"items":[{"price":"price_1","quantity":"2"},{"price":"p2"}],"expand":["a","b.c"],"name":"Jane Doe!"})
        );
    }

    #[test]
    fn round_trips() {
        let v = json!({"a":{"b":"1"},"l":[{"x":"y"}],"e":["p","q"]});
        assert_eq!(parse(&encode(&v)).unwrap(), v);
    }

    #[test]
    fn rejects_mixed() {
        assert!(parse("a=1&a[b]=2").is_err());
    }
}
