import type { RequestState } from "../../db/schema.js";
import type { PolicySpec } from "../../contract/catalog.js";

export type { RequestState };

/** An approver set resolved against the directory at decision time. */
export interface ApproverSet {
  groups: string[];
  users: string[];
  manager: boolean;
}

/** A stage as fixed at submission (policy stages, plus an extra one outside the activation windows). */
export interface Stage {
  name: string;
  approvers: ApproverSet;
  count: number;
  timeoutMs: number | null;
  onTimeout: "deny" | "escalate" | "approve";
  escalateTo: ApproverSet | null;
  /** Set once the stage has escalated: its approvers are then escalateTo. */
  escalated?: boolean;
}

export interface Decision {
  stageIndex: number;
  approverId: string;
  decision: "approve" | "deny";
}

/** What the pure rules need to know about a request. */
export interface RequestFacts {
  state: RequestState;
  requesterId: string;
  requesterManagerId: string | null;
  stages: Stage[];
  stageIndex: number;
  stageDeadline: Date | null;
  decisions: Decision[];
  risk: "low" | "medium" | "high" | "critical";
  /** The policy (as snapshotted at submission) lets one person approve several stages. */
  sameApproverAcrossStages: boolean;
}

/** Who is deciding, with their group names as they are now. */
export interface Approver {
  id: string;
  name: string;
  groups: readonly string[];
}

export type DecisionOutcome =
  | {
      ok: false;
      code:
        "REQUEST_NOT_PENDING" | "SELF_APPROVAL" | "NOT_AN_APPROVER" | "ALREADY_DECIDED" | "DISTINCT_APPROVERS_REQUIRED";
      message: string;
    }
  | { ok: true; result: "denied" }
  | { ok: true; result: "recorded"; approvals: number; needed: number }
  | { ok: true; result: "next_stage"; stageIndex: number }
  | { ok: true; result: "approved" };

export type TimeoutOutcome =
  | { result: "none" }
  | { result: "denied"; reason: string }
  | { result: "escalated"; stage: Stage; deadline: Date | null }
  | { result: "next_stage"; stageIndex: number }
  | { result: "approved"; reason: string };

export type { PolicySpec };
