/** The catalog from the configuration-as-code example, shared by the catalog tests. */
export const SEED_CATALOG_YAML = `apiVersion: stint/v1
groups:
  - name: sre
    members: [alice, bob]
  - name: sre-leads
    members: [carol]
policies:
  - name: high-risk
    defaultDuration: 1h
    maxDuration: 2h
    mfa: { required: true, maxAge: 10m }
    justification: { minLength: 20, ticketPattern: "^(INC|CHG)-[0-9]+$" }
    approval:
      stages:
        - approvers: { manager: true }
          count: 1
          timeout: 30m
          onTimeout: escalate
          escalateTo: { groups: [sre-leads] }
    windows:
      - { days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00", timeZone: Europe/London }
    outsideWindow: require-approval
    maxExtensions: 1
targets:
  - name: stint
    kind: internal
roles:
  - name: prod-db-reader
    target: stint
    risk: high
    policy: high-risk
    owners: [sre-leads]
eligibility:
  - role: prod-db-reader
    groups: [sre]
    until: 2027-11-24
`;
