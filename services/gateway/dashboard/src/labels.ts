// Words the dashboard shows for the API's enum values.
import type { Engine, Phase } from "./api/client";

/** Engines a user can choose when creating a store, in menu order. */
export const engineChoices: { value: Engine; label: string; description: string }[] = [
  { value: "ENGINE_WOOCOMMERCE", label: "WooCommerce", description: "WordPress + MariaDB" },
  { value: "ENGINE_MEDUSA", label: "Medusa", description: "PostgreSQL + Redis" },
];

/** engineLabel names an engine for people. */
export function engineLabel(engine: Engine | undefined): string {
  return engineChoices.find((e) => e.value === engine)?.label ?? "Unknown engine";
}

/** What each phase is called and what it means. */
export const phaseInfo: Record<Phase, { label: string; description: string }> = {
  PHASE_UNSPECIFIED: { label: "Unknown", description: "The platform has not reported on this store yet." },
  PHASE_PROVISIONING: { label: "Provisioning", description: "The platform is creating or repairing the store." },
  PHASE_READY: { label: "Ready", description: "The store is serving at its URL." },
  PHASE_FAILED: { label: "Failed", description: "Provisioning failed. Retry tries again." },
  PHASE_DELETING: { label: "Deleting", description: "The platform is removing everything the store owns." },
  PHASE_DELETED: { label: "Deleted", description: "Everything the store owned is gone." },
};

/** phaseLabel names a phase for people. */
export function phaseLabel(phase: Phase | undefined): string {
  return phaseInfo[phase ?? "PHASE_UNSPECIFIED"]?.label ?? "Unknown";
}

/** Audit actions, as pkg/lifecycle names them, with what people read. */
export const auditActions: { value: string; label: string }[] = [
  { value: "create", label: "Created" },
  { value: "delete", label: "Deletion requested" },
  { value: "retry", label: "Retried" },
  { value: "upgrade", label: "Upgrade requested" },
  { value: "ready", label: "Became ready" },
  { value: "failure", label: "Failed" },
  { value: "deleted", label: "Deleted" },
  { value: "repaired", label: "Drift repaired" },
];

/** actionLabel describes an audit action; unknown actions show as they are. */
export function actionLabel(action: string | undefined): string {
  return auditActions.find((a) => a.value === action)?.label ?? action ?? "";
}
