/** Shared set-up of the security tests. */

/**
 * A catalog file that widens access: `user` becomes eligible for `role`, a high-risk role on an internal
 * target, without MFA. Held for a second approver while four-eyes covers the high tier.
 */
export function wideningFile(role = "payroll-admin", user = "mallory"): string {
  return `apiVersion: stint/v1
policies:
  - { name: plain, mfa: { required: false } }
targets:
  - { name: payroll, kind: internal }
roles:
  - { name: ${role}, target: payroll, policy: plain, risk: high }
eligibility:
  - { role: ${role}, users: [${user}] }
`;
}
