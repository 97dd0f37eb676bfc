/**
 * The shell: sign-in, then navigation between pages. Pages are loaded on demand so the first page
 * loads only what it needs. The current page lives in the URL hash-free path (history API).
 */
import { AppShell, Burger, Group, NavLink, ScrollArea, Text, Button, Loader, Center, Badge } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { lazy, Suspense, useEffect, useState, useSyncExternalStore, type ComponentType } from "react";
import { currentSession, hasRole, onSessionChange, prefetch, signOut } from "./api.js";
import { requestIdOfPath } from "./decision-link.js";
import { SignIn } from "./pages/SignIn.js";

interface Page {
  path: string;
  label: string;
  /** Platform roles that see this page; empty: everybody signed in. */
  roles: string[];
  component: ComponentType;
  /** The GETs the page makes first: started with its code, not after it (see `prefetch`). */
  data?: readonly string[];
}

const PAGES: Page[] = [
  {
    path: "/",
    label: "My access",
    roles: [],
    component: lazy(() => import("./pages/MyAccess.js")),
    data: ["/v1/me/roles", "/v1/activation-requests?scope=mine&limit=100"],
  },
  { path: "/approvals", label: "Approvals", roles: [], component: lazy(() => import("./pages/Approvals.js")) },
  { path: "/requests", label: "Requests", roles: [], component: lazy(() => import("./pages/Requests.js")) },
  {
    path: "/sessions",
    label: "Sessions",
    roles: ["admin", "auditor"],
    component: lazy(() => import("./pages/Sessions.js")),
  },
  {
    path: "/live",
    label: "Live sessions",
    roles: [],
    component: lazy(() => import("./pages/Live.js")),
  },
  { path: "/vault", label: "Vault", roles: [], component: lazy(() => import("./pages/Vault.js")) },
  {
    path: "/admin",
    label: "Administration",
    roles: ["admin", "security", "auditor"],
    component: lazy(() => import("./pages/Admin.js")),
  },
  {
    path: "/audit",
    label: "Audit",
    roles: ["admin", "security", "auditor"],
    component: lazy(() => import("./pages/Audit.js")),
  },
  {
    path: "/dashboards",
    label: "Dashboards",
    roles: ["admin", "security", "auditor"],
    component: lazy(() => import("./pages/Dashboards.js")),
  },
  { path: "/reviews", label: "Reviews", roles: [], component: lazy(() => import("./pages/Reviews.js")) },
  {
    path: "/evidence",
    label: "Evidence",
    roles: ["admin", "security", "auditor"],
    component: lazy(() => import("./pages/Evidence.js")),
  },
  {
    path: "/alerts",
    label: "Alerts",
    roles: ["admin", "security", "auditor"],
    component: lazy(() => import("./pages/Alerts.js")),
  },
  { path: "/account", label: "Account", roles: [], component: lazy(() => import("./pages/Account.js")) },
];

/** A CLI session's passkey step-up handed to the browser (/step-up/<id>). */
const StepUpHandoff = lazy(() => import("./pages/StepUpHandoff.js"));
const handoffIdOfPath = (path: string) => /^\/step-up\/([0-9a-f-]{36})$/.exec(path)?.[1] ?? null;

/** One request (where notification links lead), under the Requests entry. */
const RequestPage = lazy(() => import("./pages/RequestPage.js"));

function usePath(): [string, (path: string) => void] {
  const [path, setPath] = useState(window.location.pathname);
  useEffect(() => {
    const onPop = () => setPath(window.location.pathname);
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  const navigate = (next: string) => {
    if (next !== window.location.pathname) window.history.pushState(null, "", next);
    setPath(next);
  };
  return [path, navigate];
}

/** Starts the page's first GETs as it mounts, alongside the download of its code. */
function Prefetch({ paths }: { paths: readonly string[] }) {
  useEffect(() => prefetch(paths), [paths]);
  return null;
}

export function App() {
  const session = useSyncExternalStore(onSessionChange, currentSession);
  const [path, navigate] = usePath();
  const [opened, { toggle, close }] = useDisclosure();
  // The first page's code downloads while the user types their password (a first visit otherwise waits for
  // it after signing in).
  useEffect(() => {
    void import("./pages/MyAccess.js");
  }, []);
  if (!session) return <SignIn />;
  const visible = PAGES.filter((p) => p.roles.length === 0 || hasRole(...p.roles));
  const requestId = requestIdOfPath(path);
  const handoffId = handoffIdOfPath(path);
  const page = visible.find((p) => p.path === (requestId ? "/requests" : path)) ?? visible[0]!;
  const Current = page.component;
  return (
    <AppShell
      header={{ height: 56 }}
      navbar={{ width: 220, breakpoint: "sm", collapsed: { mobile: !opened } }}
      padding="md"
    >
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Open navigation" />
            <Text fw={700} size="lg" component="span">
              Stint
            </Text>
          </Group>
          <Group gap="sm" wrap="nowrap">
            <Text size="sm" visibleFrom="xs">
              {session.user.name}
            </Text>
            {session.user.platformRoles.map((r) => (
              <Badge key={r} variant="light" visibleFrom="sm">
                {r}
              </Badge>
            ))}
            <Button variant="default" size="xs" onClick={() => void signOut()}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" aria-label="Main">
        <ScrollArea>
          {visible.map((p) => (
            <NavLink
              key={p.path}
              href={p.path}
              label={p.label}
              active={p === page}
              aria-current={p === page ? "page" : undefined}
              onClick={(event) => {
                event.preventDefault();
                navigate(p.path);
                close();
              }}
            />
          ))}
        </ScrollArea>
      </AppShell.Navbar>
      <AppShell.Main>
        {page.data && !requestId && !handoffId && <Prefetch key={page.path} paths={page.data} />}
        <Suspense
          fallback={
            <Center h={200}>
              <Loader aria-label="Loading" />
            </Center>
          }
        >
          {handoffId ? (
            <StepUpHandoff id={handoffId} key={handoffId} />
          ) : requestId ? (
            <RequestPage id={requestId} key={requestId} />
          ) : (
            <Current />
          )}
        </Suspense>
      </AppShell.Main>
    </AppShell>
  );
}
