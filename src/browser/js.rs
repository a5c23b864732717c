//! The JavaScript the tools run in the page. Each constant is a function
//! expression; [`call`] applies it to JSON arguments. Finding elements in the
//! page (rather than through CDP's DOM domain) lets one round trip answer
//! "is it there, visible, enabled, not covered, and where".

use serde_json::Value;

/// `(function)(arg, …)` with the arguments as JSON (valid JavaScript literals).
pub fn call(function: &str, args: &[Value]) -> String {
    let args: Vec<String> = args.iter().map(Value::to_string).collect();
    format!("({function})({})", args.join(", "))
}

/// Shared helpers, prepended to the functions below.
const HELPERS: &str = r#"
  const norm = s => String(s ?? '').replace(/\s+/g, ' ').trim();
  const visible = el => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  };
  // What a selector means here: its first visible match, else its first.
  const pick = selector => {
    const all = [...document.querySelectorAll(selector)];
    return all.find(visible) || all[0] || null;
  };
  const describe = el => {
    let d = '<' + el.tagName.toLowerCase();
    for (const a of ['id', 'name', 'type', 'role', 'href', 'action', 'method', 'class']) {
      const v = el.getAttribute(a);
      if (v) d += ' ' + a + '="' + v.slice(0, 60) + '"';
    }
    d += '>';
    const t = norm(el.innerText || el.value || el.getAttribute('aria-label') || '');
    if (t && el.tagName !== 'FORM' && el.tagName !== 'SELECT') d += ' "' + t.slice(0, 80) + '"';
    return d;
  };
"#;

/// `(selector, text) => {found, matches, visible, disabled, covered, x, y, what}`:
/// the element `selector` matches (the first visible one), or with `text`
/// the clickable element whose visible text is `text` (ignoring case and
/// spacing; an exact match wins over a partial one), scrolled to the middle of
/// the viewport; `covered` names what lies on top of its centre, if anything.
pub fn locate() -> String {
    format!(
        r#"(selector, text) => {{
  {HELPERS}
  let el = null, matches = 0;
  if (selector !== null) {{
    let all;
    try {{ all = [...document.querySelectorAll(selector)]; }}
    catch (e) {{ return {{error: 'not a valid CSS selector: ' + e.message}}; }}
    matches = all.length;
    el = all.find(visible) || all[0] || null;
  }} else {{
    const want = norm(text).toLowerCase();
    const label = e => norm(e.innerText || e.value || e.getAttribute('aria-label')
      || e.getAttribute('title') || '').toLowerCase();
    const clickable = [...document.querySelectorAll(
      'a, button, input[type=submit], input[type=button], input[type=reset], input[type=checkbox], '
      + 'input[type=radio], summary, label, [role=button], [role=link], [role=tab], [role=menuitem], '
      + '[role=checkbox], [role=option], [onclick]')].filter(visible);
    el = clickable.find(e => label(e) === want) || null;
    if (!el && document.body) {{
      const same = [...document.body.querySelectorAll('*')].filter(e => visible(e) && label(e) === want);
      const set = new Set(same);
      el = same.find(e => ![...e.children].some(c => set.has(c))) || null;
    }}
    if (!el) el = clickable.find(e => label(e).includes(want)) || null;
    matches = el ? 1 : 0;
  }}
  if (!el) return {{found: false, matches}};
  el.scrollIntoView({{block: 'center', inline: 'center'}});
  const r = el.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  const own = h => h === el || el.contains(h) || (el.labels && [...el.labels].some(l => l.contains(h)));
  const covered = visible(el) && hit && !own(hit) ? describe(hit) : null;
  return {{found: true, matches, visible: visible(el), disabled: !!el.disabled, covered, x, y,
    what: describe(el)}};
}}"#
    )
}

/// `(selector, clear) => {what, editable}`: focuses the field, empties it when
/// `clear` (through the native value setter and an `input` event, which
/// frameworks such as React listen to).
pub fn focus_field() -> String {
    format!(
        r#"(selector, clear) => {{
  {HELPERS}
  const el = pick(selector);
  if (!el) return {{error: 'no element matches `' + selector + '`'}};
  const field = el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement;
  if (!field && !el.isContentEditable) {{
    return {{error: describe(el) + ' is not a text field (input, textarea or contenteditable)'}};
  }}
  if (el.readOnly) return {{error: describe(el) + ' is read-only'}};
  el.focus();
  if (clear) {{
    if (field) {{
      const proto = el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
      Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, '');
      el.dispatchEvent(new Event('input', {{bubbles: true}}));
    }} else {{
      el.textContent = '';
      el.dispatchEvent(new Event('input', {{bubbles: true}}));
    }}
  }}
  return {{what: describe(el), focused: document.activeElement === el}};
}}"#
    )
}

/// `selector => value`: what a field holds now.
pub fn field_value() -> String {
    format!(
        r#"selector => {{
  {HELPERS}
  const el = pick(selector);
  if (!el) return null;
  return 'value' in el ? String(el.value) : el.innerText;
}}"#
    )
}

/// `(selector, value) => {ok} | {error}`: picks the `<select>` option whose
/// value, or else visible label, is `value`, and fires `input` and `change`.
pub fn select_option() -> String {
    format!(
        r#"(selector, value) => {{
  {HELPERS}
  const el = pick(selector);
  if (!el) return {{error: 'no element matches `' + selector + '`'}};
  if (!(el instanceof HTMLSelectElement)) return {{error: describe(el) + ' is not a <select>'}};
  const opts = [...el.options];
  const want = norm(value);
  const opt = opts.find(o => o.value === value) || opts.find(o => norm(o.text) === want)
    || opts.find(o => norm(o.text).toLowerCase() === want.toLowerCase());
  const list = () => opts.map(o => norm(o.text) === o.value ? JSON.stringify(o.value)
    : JSON.stringify(o.value) + ' (' + norm(o.text) + ')').join(', ');
  if (!opt) return {{error: 'no option ' + JSON.stringify(value) + ' in ' + describe(el) + '; its options are: ' + list()}};
  if (opt.disabled) return {{error: 'the option ' + JSON.stringify(value) + ' is disabled'}};
  if (el.disabled) return {{error: describe(el) + ' is disabled'}};
  el.focus();
  if (el.multiple) opt.selected = true; else el.value = opt.value;
  el.dispatchEvent(new Event('input', {{bubbles: true}}));
  el.dispatchEvent(new Event('change', {{bubbles: true}}));
  return {{ok: 'selected ' + JSON.stringify(opt.value) + ' (' + norm(opt.text) + ') in ' + describe(el)}};
}}"#
    )
}

/// `selector => {ok} | {error}`: submits the form `selector` is or is inside,
/// as its submit button would (`requestSubmit`: submit handlers run), after
/// the browser's own validation, whose complaints come back as the error.
pub fn submit_form() -> String {
    format!(
        r#"selector => {{
  {HELPERS}
  const el = pick(selector);
  if (!el) return {{error: 'no element matches `' + selector + '`'}};
  const form = el instanceof HTMLFormElement ? el : (el.form || el.closest('form'));
  if (!form) return {{error: describe(el) + ' is not a form and is not inside one; click its button with browser_click instead'}};
  const submitter = (el.type === 'submit' || el.type === 'image') && el.form === form ? el : null;
  const skip = form.noValidate || (submitter && submitter.formNoValidate);
  if (!skip && !form.checkValidity()) {{
    const bad = [...form.elements].filter(e => e.willValidate && !e.checkValidity())
      .map(e => (e.name || e.id || e.tagName.toLowerCase()) + ': ' + e.validationMessage);
    return {{error: 'the browser did not submit ' + describe(form) + ', its validation failed: ' + bad.join('; ')}};
  }}
  form.requestSubmit(submitter);
  return {{ok: 'submitted ' + describe(form)}};
}}"#
    )
}

/// `text => bool`: whether the page's visible text holds `text` (spacing ignored).
pub const HAS_TEXT: &str = r#"text => {
  const norm = s => String(s ?? '').replace(/\s+/g, ' ').trim();
  return norm(document.body ? document.body.innerText : '').includes(norm(text));
}"#;

/// The page's visible text.
pub const BODY_TEXT: &str = "() => document.body ? document.body.innerText : ''";

/// `{url, title, status}` of the current document.
pub const PAGE_INFO: &str = r#"() => {
  const nav = performance.getEntriesByType('navigation')[0];
  return {url: location.href, title: document.title, status: nav && nav.responseStatus ? nav.responseStatus : null};
}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_passed_as_json_literals() {
        assert_eq!(
            call("(a, b) => a", &[json!("it's \"x\"\n"), Value::Null]),
            r#"((a, b) => a)("it's \"x\"\n", null)"#
        );
    }
}
