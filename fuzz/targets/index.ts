import type { FuzzTarget } from "../harness.js";
import { config } from "./config.js";
import { pgBackend, pgFrontend } from "./pg-wire.js";
import { scram } from "./scram.js";
import { sshCert } from "./ssh-cert.js";

export const TARGETS: FuzzTarget[] = [pgFrontend, pgBackend, scram, sshCert, config];
