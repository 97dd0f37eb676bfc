/** Access review campaigns: what a campaign declares and what an item carries. */
export type Risk = "low" | "medium" | "high" | "critical";
export type OnMissed = "remove" | "keep";

/** Which eligibility a campaign reviews; every field given narrows it (an empty scope is everything). */
export interface CampaignScope {
  roles?: string[] | undefined;
  targets?: string[] | undefined;
  /** Eligibility held by these groups, or by their members. */
  groups?: string[] | undefined;
  risk?: Risk[] | undefined;
}

/** Who reviews an item: the union of the sources given; the fallback group when they name nobody. */
export interface CampaignReviewers {
  owners?: boolean | undefined;
  manager?: boolean | undefined;
  groups?: string[] | undefined;
  fallback?: string | undefined;
}

/** A recurring campaign as the configuration file declares it (`reviews:`). */
export interface ReviewDefinition {
  name: string;
  every: string;
  /** How long each campaign stays open (its due date is opening + this). */
  duration: string;
  scope: CampaignScope;
  reviewers: CampaignReviewers;
  remindEvery?: string | undefined;
  escalateTo?: string | undefined;
  onMissed?: OnMissed | undefined;
}

export interface Evidence {
  lastActivationAt: string | null;
  activationsInPeriod: number;
  /** Recorded sessions (ssh, psql) on the role in the period. */
  sessionsInPeriod: number;
  periodDays: number;
  lastSignInAt: string | null;
  recommendation: "keep" | "remove";
  recommendationText: string;
}
