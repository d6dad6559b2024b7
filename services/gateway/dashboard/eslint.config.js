// ESLint for the dashboard (`npm run lint`, run by `make lint`): the
// recommended JavaScript and TypeScript rules and React's rules of hooks.
// Type errors are tsc's job (`npm run typecheck`).
import js from "@eslint/js";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  // Build output and the client generated from the OpenAPI document.
  { ignores: ["dist/", "node_modules/", "src/api/schema.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["src/**/*.{ts,tsx}", "vite.config.ts"],
    languageOptions: { globals: globals.browser },
    plugins: { "react-hooks": reactHooks },
    rules: reactHooks.configs.recommended.rules,
  },
  {
    files: ["scripts/**/*.{mjs,ts}"],
    languageOptions: { globals: globals.node },
  },
  {
    // Node drives the browser, and the functions it sends there
    // (page.evaluate) run in the page.
    files: ["e2e/**/*.mjs"],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
  },
);
