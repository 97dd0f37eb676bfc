import "@mantine/core/styles.css";
import { MantineProvider, createTheme, type CSSVariablesResolver } from "@mantine/core";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
// First, before anything renders: takes a decision link's token out of the address bar.
import "./decision-link.js";
import { App } from "./App.js";

// Colours chosen for WCAG AA contrast on white.
const theme = createTheme({ primaryColor: "indigo", primaryShade: 8, defaultRadius: "sm" });

// Mantine's dimmed text and light-variant labels are below WCAG AA contrast on white; darken them everywhere.
const LIGHT_COLORS = ["indigo", "gray", "red", "green", "yellow", "orange", "blue", "teal", "grape", "violet", "cyan"];
const contrast: CSSVariablesResolver = () => ({
  variables: {},
  light: {
    "--mantine-color-dimmed": "var(--mantine-color-gray-7)",
    ...Object.fromEntries(LIGHT_COLORS.map((c) => [`--mantine-color-${c}-light-color`, `var(--mantine-color-${c}-9)`])),
  },
  dark: {},
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <MantineProvider theme={theme} defaultColorScheme="light" cssVariablesResolver={contrast}>
      <App />
    </MantineProvider>
  </StrictMode>,
);
