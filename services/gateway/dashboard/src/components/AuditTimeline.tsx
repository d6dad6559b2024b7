import type { AuditEntry } from "../api/client";
import { actionLabel } from "../labels";
import { RelativeTime } from "./RelativeTime";

/** AuditTimeline shows one store's audit entries in order, oldest first. */
export function AuditTimeline({ entries }: { entries: AuditEntry[] }) {
  return (
    <ol className="timeline" aria-label="History">
      {entries.map((e) => (
        <li key={e.id} className={`timeline-item action-${e.action}`}>
          <span className="timeline-dot" aria-hidden="true" />
          <div>
            <p className="timeline-head">
              <strong>{actionLabel(e.action)}</strong> by {e.actor || "unknown"} · <RelativeTime value={e.time} />
            </p>
            {e.detail && <p className="timeline-detail">{e.detail}</p>}
          </div>
        </li>
      ))}
    </ol>
  );
}
