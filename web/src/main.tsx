import "@mantine/core/styles.css";
import "./a11y.css";
import {
  DEFAULT_THEME,
  MantineProvider,
  createTheme,
  type CSSVariablesResolver,
  type MantineColorsTuple,
} from "@mantine/core";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
// First, before anything renders: takes a decision link's token out of the address bar.
import "./decision-link.js";
import { installA11y } from "./a11y.js";
import { App } from "./App.js";

/** A palette whose shades 8 and 9 are replaced by darker ones. */
function darker(color: "yellow" | "orange" | "green" | "teal" | "cyan", shade8: string, shade9: string) {
  const base = DEFAULT_THEME.colors[color];
  return [...base.slice(0, 8), shade8, shade9] as unknown as MantineColorsTuple;
}

// Colours chosen for WCAG AA contrast on white: filled badges and buttons (shade 8, white text) and outline or
// light ones (shade 9 text on white or on a light tint) reach 4.5:1 in every colour; Mantine's own yellow, orange,
// green, teal and cyan did not (2.99–4.36:1 measured).
const theme = createTheme({
  primaryColor: "indigo",
  primaryShade: 8,
  defaultRadius: "sm",
  // No sliding or fading for people who ask their system for less motion.
  respectReducedMotion: true,
  colors: {
    yellow: darker("yellow", "#a85600", "#9c4f00"),
    orange: darker("orange", "#c8490d", "#c2410c"),
    green: darker("green", "#28803c", "#237a36"),
    teal: darker("teal", "#0a7a5a", "#087f5b"),
    cyan: darker("cyan", "#0c7a8c", "#0b7285"),
  },
  components: {
    // Every dialog (Modal and Drawer): a close button with a name, focus kept inside and given back to what opened it (a11y.ts
    // also does that when a page removes its dialog outright), and its header no second page banner.
    Modal: {
      defaultProps: {
        trapFocus: true,
        returnFocus: true,
        closeButtonProps: { "aria-label": "Close" },
        attributes: { header: { role: "none" } },
      },
    },
    ModalCloseButton: { defaultProps: { "aria-label": "Close" } },
    Drawer: {
      defaultProps: {
        trapFocus: true,
        returnFocus: true,
        closeButtonProps: { "aria-label": "Close" },
        attributes: { header: { role: "none" } },
      },
    },
    DrawerCloseButton: { defaultProps: { "aria-label": "Close" } },
  },
});

installA11y();

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
