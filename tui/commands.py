"""Command palette provider: every described binding of the current screen, by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


def _described_bindings(screen) -> list[tuple]:
    """(description, help, action, owner) for the screen's and its focused widget's bindings."""
    out, seen = [], set()
    holders = [screen] + ([screen.focused] if screen.focused is not None else [])
    for holder in holders:
        bindings = holder._bindings.key_to_bindings.values()  # merged by Textual, per key
        for binding in (b for group in bindings for b in group):
            if binding.description and binding.action not in seen:
                seen.add(binding.action)
                help_text = binding.tooltip or f"key: {binding.key}"
                out.append((binding.description, help_text, binding.action, holder))
    return out


class ScreenCommands(Provider):
    """Lists the heatmap's actions in the command palette (ctrl+p)."""

    async def discover(self) -> Hits:
        for description, help_text, action, holder in _described_bindings(self.screen):
            yield DiscoveryHit(description, partial(self._run, holder, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for description, help_text, action, holder in _described_bindings(self.screen):
            score = matcher.match(description)
            if score > 0:
                yield Hit(score, matcher.highlight(description),
                          partial(self._run, holder, action), help=help_text)

    async def _run(self, holder, action: str) -> None:
        await holder.run_action(action)
