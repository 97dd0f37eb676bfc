/**
 * The composition root: config → store → modules → HTTP app and workers.
 * createServer() builds everything without listening, for tests and main.ts.
 */
import { readFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { isIP } from "node:net";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { createRequire } from "node:module";
import { Registry, collectDefaultMetrics } from "prom-client";
import type { Config } from "./config/config.js";
import { MIGRATIONS_DIR, openAppStore, type AppStore } from "./db/index.js";
import { pendingMigrations } from "./lib/db.js";
import { watchRejectedNotifications } from "./lib/notify-senders.js";
import { systemClock, type Clock } from "./lib/clock.js";
import type { Logger } from "./lib/logger.js";
import type { ScryptParams } from "./lib/security.js";
import { buildApp, type App } from "./http/app.js";
import { registerSystemRoutes } from "./http/system.routes.js";
import { registerWebRoutes } from "./http/web.routes.js";
import { createAccessIndex, type AccessIndex } from "./modules/access-index/access-index.service.js";
import { createAuditLog, type AuditLog } from "./modules/audit/audit.service.js";
import { createAnchorWriter, type AnchorWriter } from "./modules/audit/audit.anchor.js";
import { registerAuditRoutes } from "./modules/audit/audit.routes.js";
import { createBurstHold } from "./lib/burst-hold.js";
import { createAuditSequencer, storeLease, storeWakes, type AuditSequencer } from "./modules/audit/audit.sequencer.js";
import { createSiemService, registerSiemRoutes, type SiemService } from "./modules/siem/index.js";
import { loadKeyring, type Keyring } from "./modules/keys/keys.service.js";
import { createIdentityService, type IdentityService } from "./modules/identity/identity.service.js";
import { createDirectoryService, type DirectoryService } from "./modules/identity/directory.service.js";
import { registerIdentityRoutes } from "./modules/identity/identity.routes.js";
import { createPasskeyService } from "./modules/passkeys/passkeys.service.js";
import { relyingPartyFrom } from "./modules/passkeys/passkeys.rules.js";
import { registerPasskeyRoutes } from "./modules/passkeys/passkeys.routes.js";
import { createCatalogService, type CatalogService } from "./modules/catalog/catalog.service.js";
import { StintError } from "./lib/errors.js";
import { registerCatalogRoutes } from "./modules/catalog/catalog.routes.js";
import { createChangeRequestService, type ChangeRequestService } from "./modules/catalog/change-requests.service.js";
import { registerChangeRequestRoutes } from "./modules/catalog/change-requests.routes.js";
import { createChangeRequestNotifications } from "./modules/catalog/change-request-notifications.js";
import { createOutboxRunner, type OutboxRunner } from "./workers/outbox-runner.js";
import { createScheduler, type Scheduler } from "./workers/scheduler.js";
import { createRequestService, type RequestService } from "./modules/requests/requests.service.js";
import { createActivationTokenIssuer } from "./modules/requests/activation-token.js";
import { registerRequestRoutes } from "./modules/requests/requests.routes.js";
import { createApproverContext } from "./modules/requests/approver-context.js";
import { createRequestNotifications } from "./modules/requests/request-notifications.js";
import { createDecisionLinks } from "./modules/requests/decision-links.js";
import { createNotifier, notifyHandlers } from "./modules/notify/index.js";
import { createOutboxService } from "./modules/outbox/index.js";
import type { OutboxHandlers } from "./modules/outbox/index.js";
import { configureAddressPolicy, type Connector } from "./modules/connectors/index.js";
import { createGrantService, type GrantService } from "./modules/grants/grants.service.js";
import { registerGrantRoutes } from "./modules/grants/grants.routes.js";
import { createVaultService, type VaultService } from "./modules/vault/vault.service.js";
import { registerVaultRoutes } from "./modules/vault/vault.routes.js";
import { createBlobStore, MIN_FREE_BYTES } from "./lib/blob-store.js";
import { freeBytes } from "./lib/disk.js";
import { createSessionService, SESSIONS_CHANNEL, type SessionService } from "./modules/sessions/sessions.service.js";
import { registerSessionRoutes } from "./modules/sessions/sessions.routes.js";
import { createWebTerminals, registerTerminalRoutes, type WebTerminals } from "./proxies/ssh/web-terminal.js";
import { createLiveHub } from "./modules/sessions/live-hub.js";
import { createLiveService } from "./modules/sessions/live.service.js";
import { registerLiveRoutes } from "./modules/sessions/live.routes.js";
import { createSqlConsoleService } from "./modules/sql-console/sql-console.service.js";
import { registerSqlConsoleRoutes } from "./modules/sql-console/sql-console.routes.js";
import { createWorkloadService } from "./modules/workload/workload.service.js";
import { createIssuerKeys } from "./modules/workload/jwks.js";
import { registerWorkloadRoutes } from "./modules/workload/workload.routes.js";
import { createScimService } from "./modules/scim/scim.service.js";
import { registerScimRoutes } from "./modules/scim/scim.routes.js";
import { ssoLinksOf } from "./modules/scim/scim.rules.js";
import { createProviderClients } from "./modules/sso/sso.client.js";
import { resolveProviders } from "./modules/sso/sso.config.js";
import { createSsoService, principalLinkedAt } from "./modules/sso/sso.service.js";
import { registerSsoRoutes } from "./modules/sso/sso.routes.js";
import { createReviewService, openReviewItem, registerReviewRoutes } from "./modules/reviews/index.js";
import { ALERTS_ACTOR, createAlertService, registerAlertRoutes, type AlertService } from "./modules/alerts/index.js";
import { createEvidenceService, registerEvidenceRoutes } from "./modules/evidence/index.js";
import { createReviewsWorker, type ReviewsWorker } from "./workers/reviews-worker.js";

/** How long /readyz reports not ready after a request failed on a full disk. */
const DISK_FULL_NOT_READY_MS = 30_000;

export const VERSION: string = (createRequire(import.meta.url)("../package.json") as { version: string }).version;

export interface ServerDeps {
  config: Config;
  logger: Logger;
  masterKey: Uint8Array;
  /** The vault's root key (key file or STINT_VAULT_KEY); null in shamir mode or when none is given. */
  vaultKey?: Uint8Array | null;
  clock?: Clock;
  scrypt?: ScryptParams;
  outboxHandlers?: OutboxHandlers;
  /** Tests: shorter retry pauses than the configured ones. */
  outboxBackoff?: { baseMs?: number; capMs?: number };
  /** Tests: wrap the built-in connectors. */
  connectorFor?: (kind: string) => Connector | null;
  /** An already opened store (tests); otherwise opened from the config. */
  store?: AppStore;
}

export interface Server {
  app: App;
  store: AppStore;
  audit: AuditLog;
  /** This node's in-memory index of active activations and principals (the hot paths read it). */
  accessIndex: AccessIndex;
  /** Signs the audit head and rewrites the anchor file; main starts its timer. */
  auditAnchor: AnchorWriter;
  /** Chains committed audit events in the background (PostgreSQL); started with the server. */
  auditSequencer: AuditSequencer;
  /** Streams the audit chain to the configured SIEM destinations; main starts it. */
  siem: SiemService;
  identity: IdentityService;
  directory: DirectoryService;
  outbox: OutboxRunner;
  keyring: Keyring;
  requests: RequestService;
  grants: GrantService;
  vault: VaultService;
  sessions: SessionService;
  /** Browser terminals (GET /v1/ssh/terminals); main attaches this node's SSH proxy once it listens. */
  terminals: WebTerminals;
  scheduler: Scheduler;
  /** Access reviews: opens recurring campaigns, sends reminders, applies missed items at the due date. */
  reviewsWorker: ReviewsWorker;
  /** Anomaly alerts over the audit stream; main starts its consumer. */
  alerts: AlertService;
  registry: Registry;
  /** Creates the first administrator or a setup code (printed by the caller). */
  bootstrap(): Promise<{ created?: string; setupCode?: string }>;
  close(): Promise<void>;
}

export async function createServer(deps: ServerDeps): Promise<Server> {
  const { config, logger, masterKey } = deps;
  const clock = deps.clock ?? systemClock;
  if (!deps.store && !config.databaseUrl) await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const store =
    deps.store ??
    (await openAppStore({
      databaseUrl: config.databaseUrl,
      dataDir: path.join(config.dataDir, "db"),
      lockOwner: `stint server listening on ${config.listen}`,
    }));
  // Before anything listens: notifications another database role sends on Stint's channels are counted and logged.
  const rejectedNotifications = watchRejectedNotifications(store, logger);
  let auditSequencer: AuditSequencer | undefined;
  let startedIndex: AccessIndex | undefined;
  try {
    const applied = await store.migrate(MIGRATIONS_DIR);
    if (applied.length > 0) logger.info({ applied }, "database migrated");
    const keyring = await loadKeyring({ store, masterKey, clock });
    const audit = createAuditLog({
      store,
      keyring,
      clock,
      checkpointEvery: config.auditCheckpointEvery,
      ...(config.auditSequencing !== "auto" && { sequencing: config.auditSequencing }),
    });
    const auditAnchor = createAnchorWriter({
      audit,
      file: config.auditAnchorFile,
      intervalMs: config.auditAnchorInterval,
      logger,
    });
    // Anchors the head left by the last run (a crash signs no shutdown checkpoint) under this node's
    // checkpoint interval, and fails fast on an anchor file that cannot be written.
    await auditAnchor.write({ starting: true });
    // Loaded before anything answers; the services below tell it every change through `tracked` transactions.
    const accessIndex = createAccessIndex({ store, clock, logger });
    startedIndex = accessIndex;
    await accessIndex.start();
    const indexed = accessIndex.tracked(store);
    const policy = {
      accessTokenTtlMs: config.accessTokenTtl,
      refreshSessionTtlMs: config.refreshSessionTtl,
      throttle: { maxFailures: config.loginMaxFailures, windowMs: config.loginWindow, lockoutMs: config.loginLockout },
    };
    const publicUrl = config.publicUrl ?? `http://${config.listen}`;
    const relyingParty = relyingPartyFrom({
      publicUrl,
      rpId: config.webauthnRpId,
      rpName: config.webauthnRpName,
      origins: config.webauthnOrigins,
    });
    // Said at info level: a trial on 127.0.0.1 that uses no passkeys needs no warning.
    if (isIP(relyingParty.id) !== 0)
      logger.info(
        { rpId: relyingParty.id },
        "passkeys need a host name: browsers refuse an IP address as WebAuthn RP ID (set STINT_PUBLIC_URL or STINT_WEBAUTHN_RP_ID)",
      );
    const passkeys = createPasskeyService({
      store: indexed,
      index: accessIndex,
      audit,
      clock,
      relyingParty,
      challengeTtlMs: config.webauthnChallengeTtl,
      publicUrl,
    });
    const identity = createIdentityService({
      passkeys,
      store: indexed,
      index: accessIndex,
      audit,
      keyring,
      clock,
      masterKey,
      policy,
      ...(deps.scrypt ? { scrypt: deps.scrypt } : {}),
      passwordSignIn: { mode: config.passwordSignIn, breakGlassUsers: config.breakGlassUsers },
      inviteTtlMs: config.identity.inviteTtl,
    });
    // The change requests (made with the routes, below) hold what four-eyes holds of the directory; until they exist
    // such a change is refused rather than made unheld.
    let changeRequestsForDirectory: ChangeRequestService | undefined = undefined;
    const heldBy = () => {
      if (!changeRequestsForDirectory) throw new StintError("UNAVAILABLE");
      return changeRequestsForDirectory;
    };
    const directory = createDirectoryService({
      adminSetPasswords: config.identity.adminSetPasswords,
      inviteTtlMs: config.identity.inviteTtl,
      store: indexed,
      index: accessIndex,
      audit,
      clock,
      ...(deps.scrypt ? { scrypt: deps.scrypt } : {}),
      // Disabling someone or taking them out of a group ends what they held on it, in the same transaction.
      onAccessBasisLost: (tx, scope, cause) => requests.endAccessWithoutBasis(tx, scope, cause),
      // Adding a member is judged by four-eyes as a file would be (the catalog, made with the routes, below).
      holdGroupMember: (actor, context, group, principal) => {
        if (!catalogForGrants) throw new StintError("UNAVAILABLE");
        return catalogForGrants.holdGroupMember(actor, context, group, principal);
      },
      // Granting a role that approves, or resetting an approver's password, waits for another approver (finding 81).
      fourEyes: {
        on: config.fourEyes.tiers.length > 0,
        alone: config.fourEyes.alone,
        anotherApprover: (tx, actor) => heldBy().anotherApprover(tx, actor),
        hold: (tx, actor, held, context) => heldBy().holdDirectory(tx, actor, held, context),
        seal: (bound, value) => vault.sealValue(bound, value),
        open: (bound, sealed) => vault.openValue(bound, sealed),
      },
    });

    // Where Stint may connect on someone's say-so (targets, webhooks): see src/lib/address-policy.ts.
    const addressPolicy = { allow: config.allowNetworks, deny: config.denyNetworks };
    configureAddressPolicy(addressPolicy);
    // Single sign-on providers, their client secrets read now (a missing one fails the start).
    const ssoClients = createProviderClients(resolveProviders(config.ssoProviders, process.env), {
      policy: addressPolicy,
    });
    // Which issuer each SCIM service provisions for (ssoProviders[].scim); a service in none, or two, fails the start.
    const scimSsoLinks = ssoLinksOf(ssoClients.list(), config.scimServices);
    const channels = config.notifications.channels;
    const decisionLinks = createDecisionLinks({ keyring, clock });
    const outboxService = createOutboxService({ store, clock, audit });
    const onEvent =
      channels.length > 0
        ? createRequestNotifications({
            notifier: createNotifier({ channels }),
            outbox: outboxService,
            clock,
            publicUrl: config.publicUrl ?? `http://${config.listen}`,
            decisionLinks,
          })
        : undefined;
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: "stint_process_" });
    accessIndex.registerMetrics(registry);
    registry.registerMetric(rejectedNotifications);
    // The scheduler's waves of expiries hold the sequencer's chaining until they have ended (lib/burst-hold.ts).
    const expiryBurst = createBurstHold();
    const sequencer = createAuditSequencer({
      audit,
      burst: expiryBurst,
      lease: storeLease(store),
      wakes: storeWakes(store),
      pollMs: config.auditPoll,
      holder: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      registry,
      logger,
      alertAfterMs: config.auditLagAlert,
    });
    auditSequencer = sequencer;
    sequencer.start();
    // Reads HEC tokens now: a missing one stops the start, not the first delivery.
    const siem = createSiemService({
      store,
      audit,
      destinations: config.siem.destinations,
      holder: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      registry,
      logger,
      productVersion: VERSION,
    });
    // The two services call each other: a grant is provisioned for a request, and its outcome moves the request.
    let grants: GrantService | undefined = undefined;
    // The catalog (made with the routes, below): converting standing access holds its eligibility as the catalog's
    // one-object writes are held (four-eyes), and so is adding a group member. Until it exists, both are refused
    // rather than left unheld.
    let catalogForGrants: Pick<CatalogService, "holdNewEligibility" | "holdGroupMember"> | undefined = undefined;
    let sessions: SessionService | undefined = undefined;
    const requests = createRequestService({
      store: indexed,
      index: accessIndex,
      audit,
      clock,
      decisionLinks,
      ...(onEvent ? { onEvent } : {}),
      onGrant: (tx, change) => grants!.onGrant(tx, change),
      onEnded: (tx, ended) => sessions!.onActivationsEnded(tx, ended),
      endedNotifications: (ended) => sessions!.endedNotifications(ended),
      expiryBurst,
    });
    const notifier = channels.length > 0 ? createNotifier({ channels }) : undefined;
    const vault = createVaultService({
      store: indexed,
      index: accessIndex,
      audit,
      clock,
      fileKey: deps.vaultKey ?? null,
      masterKey,
      ...(notifier
        ? {
            onBreakGlass: async (tx, event) => {
              await notifier.enqueueNotification(
                tx,
                outboxService,
                {
                  event: "breakglass.secret_revealed",
                  severity: "critical",
                  title: `BREAK-GLASS: ${event.by} revealed ${event.path}`,
                  text: `Reason: ${event.reason}. A post-incident review is open (${event.reviewId}); the secret will be rotated.`,
                  occurredAt: event.at.toISOString(),
                },
                { dedupeKey: `breakglass:${event.reviewId}` },
              );
            },
          }
        : {}),
      // Deliver the alarm now, not at the next poll.
      afterBreakGlass: () => void outbox.runOnce().catch(() => undefined),
      targets: { withCredentials: (name, work) => grants!.withCredentials(name, work) },
      ...(notifier
        ? {
            onRotationFailed: async (tx, event) => {
              await notifier.enqueueNotification(
                tx,
                outboxService,
                {
                  event: "secret.rotation_failed",
                  severity: "critical",
                  title: `Rotating ${event.path} failed`,
                  text: event.reason,
                  occurredAt: event.at.toISOString(),
                },
                { dedupeKey: `rotation-failed:${event.path}:${event.at.getTime()}` },
              );
            },
          }
        : {}),
    });
    grants = createGrantService({
      store,
      audit,
      clock,
      outbox: outboxService,
      requests,
      // A credentials read that waits (?wait=) is woken by the activation's message.
      index: accessIndex,
      masterKey,
      registry,
      logger,
      ...(deps.connectorFor ? { connectorFor: deps.connectorFor } : {}),
      vault: { sealValue: (b, v) => vault.sealValue(b, v), openValue: (b, s) => vault.openValue(b, s) },
      holdNewEligibility: (actor, context, entries, followUp) => {
        if (!catalogForGrants) throw new StintError("UNAVAILABLE");
        return catalogForGrants.holdNewEligibility(actor, context, entries, followUp);
      },
      ...(notifier
        ? {
            onAlert: async (tx, alert) => {
              const { dedupeKey, ...notification } = alert;
              await notifier.enqueueNotification(
                tx,
                outboxService,
                { ...notification, occurredAt: clock.now().toISOString() },
                { dedupeKey },
              );
            },
          }
        : {}),
    });
    // Credentials stored before they were bound to their target are bound (once) before anything uses them.
    await grants.bindStoredCredentials();
    // A rotation whose node died between changing the target and committing is settled on what the target accepts.
    await vault.reconcilePending().catch((error: unknown) => {
      const code = (error as { code?: string }).code;
      if (code !== "SEALED" && code !== "VAULT_KEY_INVALID")
        logger.warn({ err: error }, "pending rotations not settled");
    });
    // Live watchers and moderators of this node's sessions (docs/sessions.md, "Live watching").
    const liveHub = createLiveHub();
    sessions = createSessionService({
      live: liveHub,
      store,
      audit,
      clock,
      masterKey,
      blobs: createBlobStore(config.blobDir),
      recordingMaxBytes: config.recordingMaxBytes,
      registry,
      logger,
      vault,
      index: accessIndex,
    });
    await sessions.start();
    // The web SQL console: a client of this node's PostgreSQL proxy, so everything the proxy does applies.
    const pgProxyTlsCert = config.pgProxyTlsCert;
    const sqlConsole = createSqlConsoleService({
      sessions,
      audit,
      clock,
      logger,
      proxyTlsCert: pgProxyTlsCert ? () => readFile(pgProxyTlsCert, "utf8") : undefined,
    });
    const activationTokens = createActivationTokenIssuer({ requests, keyring, clock });
    const scheduler = createScheduler({
      requests,
      logger,
      pollMs: config.schedulerPoll,
      reconcile: { intervalMs: config.reconcileInterval, schedule: grants.scheduleReconcile },
      checkouts: vault,
      rotations: vault,
      // Pending requests' time to live, scheduled starts (issue 16).
      timing: requests,
      // Wakes at the next expiry (re-armed by the index's `act` messages), not only at the next poll.
      expiries: {
        next: () => requests.nextExpiry(),
        onActivated: (listener) => accessIndex.onActivated((activation) => listener(activation.expiresAt)),
      },
      now: () => clock.now().getTime(),
    });

    const reviews = createReviewService({
      store: indexed,
      audit,
      clock,
      onAccessBasisLost: (tx, scope, cause) => requests.endAccessWithoutBasis(tx, scope, cause),
      ...(notifier
        ? {
            notify: async (tx, { dedupeKey, ...notice }) => {
              await notifier.enqueueNotification(
                tx,
                outboxService,
                { ...notice, occurredAt: clock.now().toISOString() },
                { dedupeKey },
              );
            },
          }
        : {}),
    });
    const reviewsWorker = createReviewsWorker({ reviews, logger, pollMs: config.schedulerPoll });
    const alertChannels = config.alerts.channels;
    const alerts = createAlertService({
      store,
      audit,
      clock,
      config: config.alerts,
      holder: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      outbox: outboxService,
      openReviewItem,
      revoke: async (requestId, reason) => {
        await requests.revoke(ALERTS_ACTOR, requestId, reason, {
          correlationId: `alert-revoke:${requestId}`,
          sourceIp: null,
          userAgent: null,
        });
      },
      publicUrl,
      registry,
      logger,
      ...(notifier
        ? {
            notify: async (tx, notice, dedupeKey) => {
              await notifier.enqueueNotification(tx, outboxService, notice, {
                dedupeKey,
                ...(alertChannels ? { channels: alertChannels } : {}),
              });
            },
          }
        : {}),
    });

    const outbox = createOutboxRunner({
      store,
      clock,
      audit,
      registry,
      logger,
      handlers: {
        ...notifyHandlers(channels, { clock, logger, addressPolicy }),
        ...grants.handlers,
        ...alerts.handlers,
        ...deps.outboxHandlers,
      },
      pollMs: config.outboxPoll,
      backoff: { capMs: config.outboxBackoffCap, ...deps.outboxBackoff },
    });

    let diskFullAt = 0;
    const terminals = createWebTerminals({
      sessions: sessions!,
      authenticate: (authorization) => identity.authenticate(authorization),
      origins: config.publicUrl ? [new URL(config.publicUrl).origin] : [],
      logger,
    });
    const app = await buildApp(
      {
        logger,
        trustedProxies: config.trustedProxies,
        authenticate: (request) => identity.authenticate(request.headers.authorization),
        scrapeToken: config.metricsToken,
        onDiskFull: () => (diskFullAt = Date.now()),
      },
      async (scoped) => {
        await registerWebRoutes(scoped);
        registerSystemRoutes(scoped, {
          registry,
          clock,
          metricsRefreshMs: config.metricsRefresh,
          readiness: async () => {
            await store.ping();
            // Not ready while the embedded database's disk is (nearly) full, or soon after a write failed on a
            // full disk (PostgreSQL's disk is not ours to measure; its disk_full errors tell).
            const disk =
              Date.now() - diskFullAt > DISK_FULL_NOT_READY_MS &&
              (config.databaseUrl !== undefined || (await freeBytes(config.dataDir)) >= MIN_FREE_BYTES);
            return {
              database: true,
              migrations: (await pendingMigrations(store.db, MIGRATIONS_DIR)).length === 0,
              disk,
            };
          },
          jwks: () => keyring.jwks("token"),
        });
        registerIdentityRoutes(scoped, { identity, directory });
        registerPasskeyRoutes(scoped, { passkeys });
        // Four-eyes: the catalog hands a plan that widens access to the change requests, which apply it through
        // the catalog once a second admin approves (each refers to the other).
        const changeRequests = createChangeRequestService({
          store,
          audit,
          clock,
          catalog: () => catalog,
          expireAfterMs: config.fourEyes.expireAfter,
          approverMfa: config.fourEyes.approverMfa,
          // A held conversion of standing access: its approval also removes that access (grants.standing).
          onApplied: (tx, applied) => grants!.applyHeldFollowUp(tx, applied),
          // A held directory change (an approver role, an approver's password) is the directory's to apply.
          directory: {
            openHeldSecret: (id, sealed) => directory.openHeldSecret(id, sealed),
            applyHeld: (tx, held) => directory.applyHeld(tx, held),
          },
          ...(notifier
            ? {
                onCreated: createChangeRequestNotifications({ notifier, outbox: outboxService, publicUrl }),
              }
            : {}),
        });
        const catalog = createCatalogService({
          store,
          audit,
          clock,
          masterKey,
          onAccessBasisLost: (tx, scope, cause) => requests.endAccessWithoutBasis(tx, scope, cause),
          fourEyes: {
            tiers: config.fourEyes.tiers,
            alone: config.fourEyes.alone,
            anotherApprover: changeRequests.anotherApprover,
            hold: changeRequests.hold,
          },
        });
        catalogForGrants = catalog;
        changeRequestsForDirectory = changeRequests;
        registerCatalogRoutes(scoped, { catalog });
        registerChangeRequestRoutes(scoped, { changeRequests });
        registerAuditRoutes(scoped, { audit, version: VERSION });
        registerSiemRoutes(scoped, { siem });
        registerReviewRoutes(scoped, { reviews });
        registerAlertRoutes(scoped, { alerts });
        registerEvidenceRoutes(scoped, { evidence: createEvidenceService({ store, audit, clock }) });
        registerRequestRoutes(scoped, {
          requests,
          tokens: activationTokens,
          approverContext: createApproverContext({ store }),
        });
        registerGrantRoutes(scoped, { grants: grants! });
        registerVaultRoutes(scoped, { vault });
        registerSessionRoutes(scoped, { sessions: sessions! });
        registerTerminalRoutes(scoped, { terminals });
        registerLiveRoutes(scoped, {
          live: createLiveService({
            store,
            audit,
            clock,
            logger,
            hub: liveHub,
            node: sessions!.node,
            channel: SESSIONS_CHANNEL,
          }),
          authenticate: (authorization) => identity.authenticate(authorization),
          origins: config.publicUrl ? [new URL(config.publicUrl).origin] : [],
        });
        registerSqlConsoleRoutes(scoped, { console: sqlConsole });
        registerWorkloadRoutes(scoped, {
          workload: createWorkloadService({
            store,
            audit,
            clock,
            issuerKeys: createIssuerKeys({ cooldownMs: config.workloadJwksCooldown, addressPolicy }),
          }),
        });
        registerSsoRoutes(scoped, {
          sso: createSsoService({
            store: indexed,
            index: accessIndex,
            audit,
            clock,
            identity,
            masterKey,
            clients: ssoClients,
            publicUrl: config.publicUrl ?? `http://${config.listen}`,
            onAccessBasisLost: (tx, scope, cause) => requests.endAccessWithoutBasis(tx, scope, cause),
          }),
        });
        registerScimRoutes(scoped, {
          scim: createScimService({
            store: indexed,
            index: accessIndex,
            audit,
            clock,
            services: config.scimServices,
            publicUrl: config.publicUrl ?? `http://${config.listen}`,
            ssoLinks: scimSsoLinks,
            linkedAccount: principalLinkedAt,
            onAccessBasisLost: (tx, scope, cause) => requests.endAccessWithoutBasis(tx, scope, cause),
          }),
        });
      },
    );

    let closed = false;
    return {
      app,
      store,
      audit,
      accessIndex,
      auditAnchor,
      auditSequencer: sequencer,
      siem,
      identity,
      directory,
      outbox,
      keyring,
      requests,
      grants,
      vault,
      sessions,
      terminals,
      scheduler,
      reviewsWorker,
      alerts,
      registry,
      bootstrap: () =>
        identity.bootstrap({ adminName: config.bootstrapAdminName, adminPassword: config.bootstrapAdminPassword }),
      async close() {
        if (closed) return;
        closed = true;
        await app.close();
        await scheduler.stop();
        await reviewsWorker.stop();
        await alerts.stop();
        await outbox.stop();
        await sqlConsole.stop();
        await sessions!.stop();
        await accessIndex.stop();
        await siem.stop();
        await auditAnchor.stop();
        await sequencer.stop();
        await auditAnchor
          .write()
          .catch((error: unknown) => logger.error({ err: error }, "could not sign the shutdown audit checkpoint"));
        await store.close();
      },
    };
  } catch (error) {
    await auditSequencer?.stop().catch(() => undefined);
    await startedIndex?.stop().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw error;
  }
}
