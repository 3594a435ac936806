//! The API's reference page (`/api/v1/docs`), rendered once from the OpenAPI
//! document (as JSON, so it reads exactly what clients read): every operation
//! with its parameters, body and answers, and the schemas they name. Plain
//! HTML with no script, so it works offline and under the strictest policy.

use serde_json::Value;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn link(reference: &str) -> String {
    let name = reference.rsplit('/').next().unwrap_or("");
    format!("<a href=\"#schema-{0}\">{0}</a>", esc(name))
}

/// A schema's name (a reference) or its type, in a few words.
fn shape(v: &Value) -> String {
    if let Some(r) = v["$ref"].as_str() {
        return link(r);
    }
    if let Some(r) = v["items"]["$ref"].as_str() {
        return format!("array of {}", link(r));
    }
    if let Some(alts) = v["oneOf"].as_array() {
        return alts.iter().map(shape).collect::<Vec<_>>().join(" or ");
    }
    match &v["type"] {
        Value::String(t) => esc(t),
        Value::Array(ts) => esc(&ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or ")),
        _ => "object".into(),
    }
}

fn operation(method: &str, path: &str, op: &Value) -> String {
    let mut out = format!(
        "<section class=\"op\"><h3><span class=\"m\">{}</span> <code>{}</code></h3>",
        method.to_uppercase(),
        esc(path)
    );
    let about = op["description"].as_str().or(op["summary"].as_str()).unwrap_or("");
    out.push_str(&format!("<p>{}</p>", esc(about)));
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>required</th><th>about</th></tr>");
        for p in params {
            out.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["in"].as_str().unwrap_or("")),
                if p["required"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                esc(p["description"].as_str().unwrap_or(""))
            ));
        }
        out.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (ty, c) in content {
            out.push_str(&format!("<p>Body ({}): {}</p>", esc(ty), shape(&c["schema"])));
        }
    }
    out.push_str("<ul>");
    if let Some(responses) = op["responses"].as_object() {
        for (status, r) in responses {
            let body = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| shape(&c["schema"]))
                .unwrap_or_default();
            out.push_str(&format!(
                "<li><code>{}</code> {} {}</li>",
                esc(status),
                esc(r["description"].as_str().unwrap_or("")),
                body
            ));
        }
    }
    out.push_str("</ul></section>");
    out
}

/// The whole page.
pub fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let doc = serde_json::to_value(doc).unwrap_or_default();
    let mut body = format!(
        "<h1>{} {}</h1><p>{}</p>",
        esc(doc["info"]["title"].as_str().unwrap_or("")),
        esc(doc["info"]["version"].as_str().unwrap_or("")),
        esc(doc["info"]["description"].as_str().unwrap_or(""))
    );
    body.push_str(
        "<p>Machine-readable: <a href=\"/api/v1/openapi.json\">openapi.json</a> (OpenAPI 3.1).</p><h2>Operations</h2>",
    );
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item[method].is_object() {
                    body.push_str(&operation(method, path, &item[method]));
                }
            }
        }
    }
    body.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            body.push_str(&format!("<section id=\"schema-{0}\"><h3>{0}</h3>", esc(name)));
            if let Some(props) = schema["properties"].as_object() {
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                body.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>about</th></tr>");
                for (field, p) in props {
                    body.push_str(&format!(
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(field),
                        shape(p),
                        if required.contains(&field.as_str()) {
                            "yes"
                        } else {
                            "no"
                        },
                        esc(p["description"].as_str().unwrap_or(""))
                    ));
                }
                body.push_str("</table>");
            }
            body.push_str("</section>");
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Berth API reference</title><style>\
body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#0f172a;background:#fff}}\
code{{font-family:ui-monospace,monospace}}table{{border-collapse:collapse;margin:.5rem 0}}td,th{{border:1px solid #cbd5e1;padding:.2rem .5rem;text-align:left}}\
.op{{border-top:1px solid #e2e8f0;padding:.5rem 0}}.m{{font-weight:700;color:#1d4ed8}}a{{color:#1d4ed8}}\
@media (prefers-color-scheme:dark){{body{{color:#e2e8f0;background:#0f172a}}td,th{{border-color:#334155}}.m,a{{color:#93c5fd}}}}\
</style></head><body><main>{body}</main></body></html>"
    )
}
