/**
 * How a Stint principal maps to a login at a target: an exception from the
 * target's `map`, else its `template` with `{{name}}`, `{{email}}` and
 * `{{emailLocal}}` (the part of the e-mail before the @) replaced.
 */
export interface IdentityMapping {
  template: string;
  map: Record<string, string>;
}

export const TEMPLATE_VARIABLES = ["name", "email", "emailLocal"] as const;
const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** Problems with a template: unknown variables, stray braces, or no variable at all. */
export function templateProblems(template: string): string[] {
  const problems: string[] = [];
  let variables = 0;
  for (const match of template.matchAll(PLACEHOLDER)) {
    variables += 1;
    const variable = match[1]!;
    if (!(TEMPLATE_VARIABLES as readonly string[]).includes(variable))
      problems.push(`unknown variable {{${variable}}} (use ${TEMPLATE_VARIABLES.map((v) => `{{${v}}}`).join(", ")})`);
  }
  const rest = template.replace(PLACEHOLDER, "");
  if (rest.includes("{{") || rest.includes("}}")) problems.push("has an unclosed or stray {{ or }}");
  if (variables === 0) problems.push("names no variable, so every user would map to the same login");
  return problems;
}

export type LoginResult = { login: string } | { problem: string };

/** The login of one principal at a target. */
export function loginFor(mapping: IdentityMapping, principal: { name: string; email: string | null }): LoginResult {
  if (Object.hasOwn(mapping.map, principal.name)) return { login: mapping.map[principal.name]! };
  let problem: string | null = null;
  const login = mapping.template.replace(PLACEHOLDER, (_, variable: string) => {
    if (variable === "name") return principal.name;
    if (principal.email === null) {
      problem = `${principal.name} has no e-mail address, which the template ${mapping.template} needs`;
      return "";
    }
    return variable === "email" ? principal.email : principal.email.slice(0, principal.email.lastIndexOf("@"));
  });
  return problem === null ? { login } : { problem };
}
