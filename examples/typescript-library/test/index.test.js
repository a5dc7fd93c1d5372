import assert from "node:assert/strict";
import test from "node:test";

import { shout, title } from "../distribution/index.js";

test("shout", () => assert.equal(shout("hi"), "HI!"));
test("title", () => assert.equal(title("a tale of two"), "A Tale Of Two"));
