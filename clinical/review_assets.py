"""Static pieces of the Review tab: the confidence choices, the keyboard shortcuts (shown on screen and
their script), the one-line meaning of each model panel, and the verdict card's scoped CSS."""

from __future__ import annotations

# No default: the reviewer must choose, so "not chosen" is never confused with a 3.
CONFIDENCE_CHOICES = [("1 · a guess", 1), ("2", 2), ("3", 3), ("4", 4), ("5 · certain", 5)]

SHORTCUT_KEYS = {"m": "mpox", "n": "not mpox", "u": "uncertain", "g": "ungradable"}

SHORTCUTS = (
    '<div class="review-keys" style="font-size:0.9em;color:#4b5563">Keys: <kbd>M</kbd> mpox · <kbd>N</kbd> not mpox · '
    "<kbd>U</kbd> uncertain · <kbd>G</kbd> ungradable · <kbd>1</kbd>–<kbd>5</kbd> confidence · "
    "<kbd>Enter</kbd> save · <kbd>V</kbd> show the model output (after your own verdict). "
    "Keys are ignored while typing a comment.</div>"
)

# Installed once per page. Keys act on the Review tab's form only while it is on screen, never while the
# focus is in a text field; they click the same radio buttons and buttons a mouse would.
KEYS_JS = """
if (!window.__mimReviewKeys) {
  window.__mimReviewKeys = true;
  const labels = {m: 'mpox', n: 'not mpox', u: 'uncertain', g: 'ungradable'};
  const visible = (el) => !!el && el.offsetParent !== null;
  const pick = (containerId, test) => {
    const box = document.getElementById(containerId);
    if (!visible(box)) return false;
    for (const input of box.querySelectorAll('input[type=radio]')) {
      const text = (input.closest('label') || input.parentElement).textContent.trim();
      if (test(text)) { input.click(); return true; }
    }
    return false;
  };
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    const tag = (target && target.tagName || '').toLowerCase();
    const typing = tag === 'textarea' || tag === 'select' || (target && target.isContentEditable) ||
      (tag === 'input' && !['radio', 'checkbox', 'button'].includes(target.type));
    if (typing || !visible(document.getElementById('review-form'))) return;
    const key = event.key.toLowerCase();
    let done = false;
    if (labels[key]) done = pick('review-verdict', (text) => text === labels[key]);
    else if (/^[1-5]$/.test(key)) done = pick('review-confidence', (text) => text.startsWith(key));
    else if (key === 'enter' && tag !== 'button') {
      const save = document.getElementById('review-save');
      if (visible(save) && !save.disabled) { save.click(); done = true; }
    } else if (key === 'v') {
      const reveal = document.getElementById('review-reveal');
      if (visible(reveal)) { reveal.click(); done = true; }
    }
    if (done) event.preventDefault();
  });
}
"""

PANEL_LINES = (
    "- **Original**: the centre crop of the photo that the model analyses.\n"
    "- **Masked**: one of the masks (grey = patches hidden from the model), at the middle mask scale.\n"
    "- **Inpainted**: every hidden patch filled back in by the model, as it learned from mpox photos.\n"
    "- **Score map**: over the original, how much worse the model's fill is than a plain blur fill, on the fixed "
    "colour bar above; its mean is the score (red raised it: less mpox-like)."
)

# The demo's card ends with advice for the public ("what to do next"); a reader needs the verdict and reason.
VERDICT_CARD_CSS = ".mim-next { display: none; }"
