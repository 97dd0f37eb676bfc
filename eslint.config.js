import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", ".stint/**", "web/dist/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["src/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [
            {
              name: "ssh2",
              importNames: ["utils"],
              message:
                "ssh2 is CommonJS: Node cannot import `utils` by name (it works in tests, fails in `npm start`); use the default export.",
            },
          ],
        },
      ],
    },
  },
  {
    // Dependencies point inward: pure rules never do IO, lib knows no domain.
    files: ["src/**/*.rules.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: [
                "node:fs*",
                "node:net",
                "node:http*",
                "pg",
                "kysely",
                "@electric-sql/*",
                "**/*.store.js",
                "**/*.service.js",
              ],
              message: "Rules are pure: no IO imports.",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["src/lib/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/modules/**", "**/http/**", "**/cli/**"], message: "lib knows no domain." }] },
      ],
    },
  },
  {
    files: ["src/cli/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/*.store.js", "**/*.service.js"],
              message: "The CLI talks to the API through src/contract only.",
            },
          ],
        },
      ],
    },
  },
);
