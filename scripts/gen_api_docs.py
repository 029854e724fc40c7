#!/usr/bin/env python3
"""Builds docs/api.md from the `//!` comments of the public headers (include/skv, detail/ excluded).

Each header contributes its file comment, then every documented public declaration: the `//!` block before it and
the declaration itself (its signature, bodies cut off), and, nested under a struct or class, every field documented
with a trailing `//!<` comment. Declarations inside `namespace detail` or in a private/protected section are left
out. Run: python3 scripts/gen_api_docs.py (CI checks the page is up to date: --check).
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "include" / "skv"


def code_part(line):
    """The line without its comment and string/char literals (for brace and paren counting)."""
    out, i, quote = [], 0, None
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "\"'":
            quote = c
        elif line.startswith("//", i):
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


def signature(lines):
    """A declaration spread over `lines`, up to its body or terminator, on one line."""
    text, depth = [], 0
    for line in lines:
        code = code_part(line).strip()
        cut = None
        for j, c in enumerate(code):
            if c in "([<":
                depth += 1
            elif c in ")]>":
                depth = max(0, depth - 1)
            elif depth == 0 and (c == "{" or c == ";"):
                cut = j
                break
        if cut is not None:
            text.append(code[:cut])
            break
        text.append(code)
    s = " ".join(t for t in text if t)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s*:\s*[A-Za-z_]\w*\(.*$", "", s) if re.match(r"^(explicit )?\w+\(.*\)\s*:", s) else s
    return s.rstrip(" :")


def document(path):
    lines = path.read_text().splitlines()
    rel = path.relative_to(ROOT / "include")
    out, i, file_doc = [f"## `<{rel}>`", ""], 0, []
    while i < len(lines) and (lines[i].startswith("//!") or not lines[i].strip()):
        text = lines[i][3:].strip() if lines[i].startswith("//!") else ""
        if not text.startswith("@file"):
            file_doc.append(text)
        i += 1
    out += [" ".join(t for t in file_doc if t) or "", ""]

    # scopes: a stack of [kind, access, depth_at_open]; kind in {"ns", "detail", "class", "other"}
    scopes, depth, block, pending = [], 0, [], None
    n = len(lines)
    while i < n:
        raw = lines[i]
        s = raw.strip()
        visible = all(k != "detail" for k, _, _ in scopes) and all(a == "public" for k, a, _ in scopes if k == "class")
        in_class = bool(scopes) and scopes[-1][0] == "class"
        if s.startswith("//!<") and pending is not None and visible:  # continuation of a field comment
            out[pending] += " " + s[4:].strip()
            i += 1
            continue
        if s.startswith("//!"):
            block.append(s[3:].strip())
            i += 1
            continue
        if in_class and re.match(r"^(public|private|protected):", s):
            scopes[-1][1] = s.split(":")[0]
            block, pending = [], None
            i += 1
            continue
        if s.startswith("#") or not s:
            if not s:
                block = []
            i += 1
            continue
        code = code_part(raw)
        # a documented field: `type name = value; //!< what`
        classes = sum(1 for k, _, _ in scopes if k == "class")
        m = re.match(r"^(.*?;)\s*//!<\s*(.*)$", raw.strip())
        if m and visible and in_class:
            out.append("  " * classes + f"- `{m.group(1).rstrip(';').strip()}` — {m.group(2).strip()}")
            pending = len(out) - 1
        elif block and visible and not s.startswith("}"):
            if not s.startswith("template") and not s.startswith("requires"):
                j = i
                while j < n and not re.search(r"[{;]", code_part(lines[j])):
                    j += 1
                decl = signature(lines[i : j + 1])
                out.append("  " * classes + f"- `{decl}` — " + " ".join(block))
                pending = None
                block = []
        else:
            pending = None if not m else pending
        if not s.startswith("template"):
            block = [] if not (s.startswith("requires")) else block
        # scope tracking
        opens, closes = code.count("{"), code.count("}")
        if opens > closes:
            if re.match(r"^namespace detail\b", s):
                kind, access = "detail", "public"
            elif re.match(r"^(SKV_NAMESPACE_BEGIN|namespace\b)", s):
                kind, access = "ns", "public"
            elif re.match(r"^(template\s*<.*>\s*)?(class|struct)\b", s) or re.match(r"^(class|struct)\b", s):
                kind, access = "class", "private" if s.startswith("class") or " class " in s.split("{")[0] else "public"
            else:
                prev = lines[i - 1].strip() if i > 0 else ""
                if re.match(r"^(class|struct)\b", s.split("<")[0]) or prev.startswith("template") and re.match(r"^(class|struct)\b", s):
                    kind, access = "class", "private" if s.startswith("class") else "public"
                else:
                    kind, access = "other", "public"
            for _ in range(opens - closes):
                scopes.append([kind, access, depth])
                depth += 1
        elif closes > opens:
            for _ in range(closes - opens):
                if scopes:
                    scopes.pop()
                depth = max(0, depth - 1)
        i += 1
    return out + [""]


def main():
    headers = sorted(p for p in INCLUDE.rglob("*.hpp") if "detail" not in p.parts)
    page = ["# API reference", "", "Generated by `python3 scripts/gen_api_docs.py` from the headers' `//!` comments; "
            "edit the headers, not this page. Fields of structs are listed under them.", ""]
    for h in headers:
        page += document(h)
    text = "\n".join(page).rstrip() + "\n"
    target = ROOT / "docs" / "api.md"
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != text:
            print("docs/api.md is out of date: run python3 scripts/gen_api_docs.py")
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
