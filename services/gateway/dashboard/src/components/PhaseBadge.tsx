import type { Phase } from "../api/client";
import { phaseInfo } from "../labels";

// A shape per phase, so that the badge does not rely on colour alone.
const glyphs: Record<Phase, string> = {
  PHASE_UNSPECIFIED: "?",
  PHASE_PROVISIONING: "◌",
  PHASE_READY: "●",
  PHASE_FAILED: "✕",
  PHASE_DELETING: "◌",
  PHASE_DELETED: "–",
};

/**
 * PhaseBadge shows a store's phase as text with a shape and a colour. The
 * glyph is hidden from assistive technology; the text is the accessible name.
 * data-phase holds the API value for tests and styles.
 */
export function PhaseBadge({ phase }: { phase: Phase | undefined }) {
  const p = phase ?? "PHASE_UNSPECIFIED";
  const info = phaseInfo[p] ?? phaseInfo.PHASE_UNSPECIFIED;
  return (
    <span className={`badge badge-${p.replace("PHASE_", "").toLowerCase()}`} data-phase={p} title={info.description}>
      <span className="badge-glyph" aria-hidden="true">
        {glyphs[p] ?? "?"}
      </span>
      {info.label}
    </span>
  );
}
