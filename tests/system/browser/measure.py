"""Measurements taken inside the page: text contrast and boxes, from computed styles.

Contrast follows WCAG 2.x: relative luminance of the text colour composited over the
effective background (every ancestor's background-color composited from the first opaque
one, the page white if none), with the text's alpha and its ancestors' opacity applied.
Disabled controls are skipped: WCAG exempts inactive components.
"""

from __future__ import annotations

from typing import Any

MEASURE_JS = """(selector) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [255, 255, 255, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {  // top over an opaque bottom
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const lum = (c) => {
    const f = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let base = [255, 255, 255, 1];
    if (layers.length && layers[layers.length - 1][3] >= 1) base = layers.pop();
    for (let i = layers.length - 1; i >= 0; i--) base = over(layers[i], base);
    return base;
  };
  const opacity = (el) => {
    let o = 1;
    for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    return o;
  };
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  };
  const texts = [], boxes = [];
  const roots = Array.from(document.querySelectorAll(selector)).filter(visible);
  for (const root of roots) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !visible(el) || el.closest(':disabled')) continue;
      const fg = parse(getComputedStyle(el).color);
      const bg = background(el);
      const shown = over([fg[0], fg[1], fg[2], fg[3] * opacity(el)], bg);
      const [a, b] = [lum(shown), lum(bg)].sort((x, y) => y - x);
      texts.push({text: n.textContent.trim().slice(0, 60), ratio: (a + 0.05) / (b + 0.05),
                  color: getComputedStyle(el).color, bg: 'rgb(' + bg.slice(0, 3).join(',') + ')'});
    }
    const outer = root.getBoundingClientRect();
    for (const el of [root, ...root.querySelectorAll('*')]) {
      if (!visible(el)) continue;
      const r = el.getBoundingClientRect();
      const clipped = el.scrollWidth > el.clientWidth + 1
        && getComputedStyle(el).overflowX !== 'visible';
      const outside = r.left < outer.left - 1 || r.right > outer.right + 1;
      if (clipped || outside) {
        boxes.push({el: el.className || el.tagName, clipped, outside, width: r.width,
                    root: outer.width, text: (el.textContent || '').trim().slice(0, 40)});
      }
    }
    const area = root.closest('.jp-OutputArea-output') || root.parentElement;
    const a = area.getBoundingClientRect();
    if (outer.right > a.right + 1) {
      boxes.push({el: 'root', text: 'wider than its output', outside: true});
    }
  }
  return {roots: roots.length, texts, boxes};
}"""

ERROR_JS = """(selector) => Array.from(document.querySelectorAll(selector)).map(el => ({
  text: el.textContent.trim(),
  clipped: el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1,
  whiteSpace: getComputedStyle(el).whiteSpace,
}))"""

THEME_JS = """async (theme) => {
  await window.jupyterapp.commands.execute('apputils:change-theme', {theme});
  const want = theme.includes('Dark') ? 'false' : 'true';
  const until = Date.now() + 15000;
  while (document.body.dataset.jpThemeLight !== want && Date.now() < until) {
    await new Promise(r => setTimeout(r, 100));
  }
  await new Promise(r => setTimeout(r, 300));
  return document.body.dataset.jpThemeLight;
}"""


def measure(page: Any, selector: str) -> dict[str, Any]:
    """Contrast of every text node and every overflowing box under ``selector``."""
    result: dict[str, Any] = page.evaluate(MEASURE_JS, selector)
    return result


def low_contrast(result: dict[str, Any], minimum: float = 4.5) -> list[dict[str, Any]]:
    return [t for t in result["texts"] if t["ratio"] < minimum]


def set_theme(page: Any, theme: str) -> None:
    """Switch JupyterLab / Notebook 7 to 'JupyterLab Light' or 'JupyterLab Dark'."""
    page.evaluate(THEME_JS, theme)


def error_lines(page: Any, selector: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = page.evaluate(ERROR_JS, selector)
    return lines
