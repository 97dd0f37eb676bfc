import type { FuzzTarget } from "../harness.js";
import { config } from "./config.js";
import { pgBackend, pgFrontend } from "./pg-wire.js";
import { scp } from "./scp.js";
import { scram } from "./scram.js";
import { sftp } from "./sftp.js";
import { sshCert } from "./ssh-cert.js";
import { sshUserauth } from "./ssh-userauth.js";

/** The in-process targets (the HTTP API and the SSH handshake start servers: fuzz/run.ts loads them). */
export const TARGETS: FuzzTarget[] = [pgFrontend, pgBackend, scram, sshCert, sshUserauth, sftp, scp, config];
