import { describe, expect, it } from "vitest";
import schemas from "../api/events.schema.json";
import { EVENT_FIELDS, FRAME_FIELDS } from "./events";

interface ObjectSchema {
  properties?: Record<string, unknown>;
}

const dumped = schemas as unknown as Record<string, ObjectSchema>;

describe.each(Object.entries({ ...EVENT_FIELDS, ...FRAME_FIELDS }))(
  "%s matches the backend's pydantic model",
  (model, fields) => {
    it("has the same fields", () => {
      const schema = dumped[model];
      expect(schema, `${model} is missing from events.schema.json`).toBeDefined();
      expect([...fields].sort()).toEqual(Object.keys(schema?.properties ?? {}).sort());
    });
  },
);
