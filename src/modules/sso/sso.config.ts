/** The configured providers with their client secrets read (from the file or environment variable named). */
import { readFileSync } from "node:fs";
import type { SsoProvider, SsoProviderConfig } from "./sso.types.js";

export function resolveProviders(configured: readonly SsoProviderConfig[], env: NodeJS.ProcessEnv): SsoProvider[] {
  return configured.map((provider) => {
    const { clientSecret, clientSecretFile, clientSecretEnv, ...rest } = provider;
    let secret = clientSecret;
    if (clientSecretFile !== undefined) {
      try {
        secret = readFileSync(clientSecretFile, "utf8").split(/\r?\n/)[0]?.trim();
      } catch (error) {
        throw new Error(
          `ssoProviders ${provider.id}: clientSecretFile ${clientSecretFile} cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`,
          { cause: error },
        );
      }
      if (!secret) throw new Error(`ssoProviders ${provider.id}: clientSecretFile ${clientSecretFile} is empty`);
    }
    if (clientSecretEnv !== undefined) {
      secret = env[clientSecretEnv];
      if (!secret)
        throw new Error(`ssoProviders ${provider.id}: the environment variable ${clientSecretEnv} is not set`);
    }
    return { ...rest, clientSecret: secret };
  });
}
