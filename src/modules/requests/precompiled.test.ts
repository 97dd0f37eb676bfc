/** The precompiled statements' text: the caller's values stay parameters, the query's constants become literals. */
import { describe, expect, it } from "vitest";
import { compileOnce } from "./precompiled.js";

const HOLE = "\u0000stint-precompiled:";

describe("compileOnce", () => {
  it("numbers the caller's values in order and writes the constants in, quoted", () => {
    const compiled = compileOnce({
      sql: "select * from t where a = $1 and b in ($2, $3) and c = $4 and d = $5 and e is $6 and f = $7",
      parameters: [HOLE + "who", "pending", "it's", HOLE + "now", 3, null, HOLE + "who"],
    });
    expect(compiled.text).toBe(
      "/* stint:prepared */ select * from t where a = $1 and b in ('pending', 'it''s') and c = $2 and d = 3 " +
        "and e is null and f = $3",
    );
    expect(compiled.order).toEqual(["who", "now", "who"]);
  });

  it("refuses a constant it cannot write as a literal", () => {
    expect(() => compileOnce({ sql: "select $1", parameters: [new Date(0)] })).toThrow(/must be passed as a value/);
  });
});
