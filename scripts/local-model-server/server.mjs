// Offline OpenAI-compatible Chat Completions server for missions, backed by
// node-llama-cpp (CPU, prebuilt binaries, no network). Started by
// `scripts/local-model serve`, which runs a copy of this file from the cached
// npm dependencies directory so that `import "node-llama-cpp"` resolves.
//
// One model, one context, one context sequence and one LlamaChat live for the
// whole process; requests are serialized through a queue, so a request whose
// prompt shares a prefix with the previous one reuses the KV cache.
//
// Protocol: prints exactly one line to stdout once listening
// ("listening on http://HOST:PORT/v1"); everything else goes to stderr.

import http from "node:http";
import crypto from "node:crypto";
import { parseArgs } from "node:util";
import {
    getLlama,
    LlamaChat,
    LlamaLogLevel,
    LlamaText,
    QwenChatWrapper,
    SpecialTokensText
} from "node-llama-cpp";

const MODEL_ID = "qwen2.5-coder-1.5b-instruct";
const MAX_BODY_BYTES = 64 * 1024 * 1024;
// Tokens kept free for the reply when deciding whether a prompt fits: the
// request needs prompt + min(max_tokens, DEFAULT_REPLY_RESERVE) + SLACK.
const DEFAULT_REPLY_RESERVE = 256;
const SLACK = 2;
const MAX_PARALLEL_CALLS = 8;
// Without max_tokens, a reply stops after this many tokens (finish "length"):
// a runaway generation on a CPU would otherwise hold the queue for minutes.
const DEFAULT_MAX_TOKENS = 4096;

// ------------------------------------------------------------------ utils --

function log(...parts) {
    process.stderr.write(`[local-model] ${parts.join(" ")}\n`);
}

class ApiError extends Error {
    constructor(status, message, code = undefined, type = undefined) {
        super(message);
        this.status = status;
        this.code = code;
        this.type = type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    }
}

class ContextOverflowError extends Error {}

function badRequest(message) {
    return new ApiError(400, message);
}

function contextLengthError(contextSize, needed) {
    return new ApiError(
        400,
        `This model's maximum context length is ${contextSize} tokens; the request needs ${needed}. ` +
            "Shorten the conversation.",
        "context_length_exceeded"
    );
}

function isObject(value) {
    return value != null && typeof value === "object" && !Array.isArray(value);
}

function randomId(prefix, length = 24) {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const bytes = crypto.randomBytes(length);
    let id = prefix;
    for (const b of bytes) id += alphabet[b % alphabet.length];
    return id;
}

// ------------------------------------------------------------------- args --

const { values: args } = parseArgs({
    options: {
        model: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "8080" },
        ctx: { type: "string", default: process.env.MISSIONS_LOCAL_MODEL_CTX ?? "16384" },
        threads: { type: "string", default: "0" }
    },
    strict: true
});
if (!args.model) {
    log("--model PATH is required");
    process.exit(2);
}
const port = Number(args.port);
const contextSizeWanted = Number(args.ctx);
const threadsWanted = Number(args.threads);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
    log(`bad --port ${args.port}`);
    process.exit(2);
}
if (!Number.isInteger(contextSizeWanted) || contextSizeWanted < 256) {
    log(`bad --ctx ${args.ctx}`);
    process.exit(2);
}
if (!Number.isInteger(threadsWanted) || threadsWanted < 0) {
    log(`bad --threads ${args.threads}`);
    process.exit(2);
}

// ---------------------------------------------------------- JSON Schema --
//
// node-llama-cpp enforces tool arguments with a GBNF grammar generated from a
// subset of JSON Schema (GbnfJsonSchema): type (string/number/integer/
// boolean/null, or object/array with their keywords), const, enum, oneOf,
// string minLength/maxLength/format(date|time|date-time), object properties/
// additionalProperties/minProperties/maxProperties, array items/prefixItems/
// minItems/maxItems, $ref "#/$defs/..." and description. Everything else is
// dropped (it is still shown to the model in the tool documentation).
//
// Its grammar makes every listed property mandatory (it ignores `required`),
// so a property that is not required becomes `oneOf [schema, null]` and null
// values of such properties are removed from the arguments afterwards.

const PRIMITIVE_TYPES = new Set(["string", "number", "integer", "boolean", "null"]);
const STRING_FORMATS = new Set(["date-time", "time", "date"]);

function anySchema(description) {
    const schema = {
        oneOf: [
            { type: ["string", "number", "boolean", "null"] },
            { type: "array" },
            { type: "object", additionalProperties: true }
        ]
    };
    if (description != null) schema.description = description;
    return schema;
}

function allowsNull(schema) {
    if (schema == null) return false;
    if (schema.type === "null") return true;
    if (Array.isArray(schema.type) && schema.type.includes("null")) return true;
    if (Array.isArray(schema.oneOf)) return schema.oneOf.some(allowsNull);
    if (Array.isArray(schema.enum)) return schema.enum.includes(null);
    return "const" in schema && schema.const === null;
}

function nonNegInt(value) {
    return Number.isInteger(value) && value >= 0 ? value : undefined;
}

// An object schema that tells its variants apart with if/then/else on one
// property's const (tool input schemas may not use a top-level oneOf, so the
// orchestrator's result does this) becomes one object schema per variant,
// which the grammar can enforce: the property fixed to the variant's value,
// the properties the branch forbids (`false`) left out, the branch's
// `required` added, and every remaining property required (the grammar would
// make an optional one nullable, and a null the schema refuses). Returns null
// for any other schema.
function discriminatedVariants(input) {
    if (!isObject(input) || !isObject(input.if) || !isObject(input.properties)) return null;
    const ifProps = isObject(input.if.properties) ? Object.entries(input.if.properties) : [];
    if (ifProps.length !== 1 || !isObject(ifProps[0][1]) || !("const" in ifProps[0][1])) return null;
    const [key, { const: value }] = ifProps[0];
    const { if: _if, then: thenBranch, else: elseBranch, ...base } = input;
    const variant = (branch, keyValues) => {
        const properties = { ...base.properties };
        const required = new Set([...(base.required ?? []), ...(isObject(branch) && Array.isArray(branch.required) ? branch.required : [])]);
        if (isObject(branch) && isObject(branch.properties)) {
            for (const [name, schema] of Object.entries(branch.properties)) {
                if (schema === false) delete properties[name];
                else if (isObject(schema) && name in properties) properties[name] = { ...properties[name], ...schema };
            }
        }
        properties[key] = keyValues.length === 1 ? { const: keyValues[0] } : { enum: keyValues };
        for (const name of Object.keys(properties)) required.add(name);
        const { description: _d, ...rest } = base;
        return { ...rest, properties, required: [...required] };
    };
    const allValues = Array.isArray(base.properties[key]?.enum) ? base.properties[key].enum : null;
    const out = [variant(thenBranch, [value])];
    if (isObject(elseBranch) && isObject(elseBranch.if)) {
        const rest = allValues?.filter((v) => v !== value);
        const narrowed = {
            ...base,
            properties: { ...base.properties, [key]: rest != null ? { enum: rest } : base.properties[key] },
            if: elseBranch.if,
            then: elseBranch.then,
            else: elseBranch.else
        };
        const more = discriminatedVariants(narrowed);
        if (more == null) return null;
        out.push(...more);
    } else if (isObject(elseBranch) && allValues != null) {
        const rest = allValues.filter((v) => v !== value);
        if (rest.length > 0) out.push(variant(elseBranch, rest));
    } else if (elseBranch !== undefined) {
        return null;
    }
    return out;
}

class SchemaConverter {
    constructor() {
        this.defs = {};
        this.dropped = new Set();
    }

    // Returns { schema: GbnfJsonSchema, shape } where shape describes where
    // optional properties were made nullable (for stripping nulls later).
    convert(input, depth = 0) {
        if (depth > 64) {
            this.dropped.add("(nesting>64)");
            return { schema: anySchema(), shape: null };
        }
        if (input === true || input == null) return { schema: anySchema(), shape: null };
        if (input === false || !isObject(input)) {
            this.dropped.add("false/invalid schema");
            return { schema: anySchema(), shape: null };
        }
        const description = typeof input.description === "string" ? input.description : undefined;
        const withDescription = (schema) => {
            if (description != null && schema.description == null) schema.description = description;
            return schema;
        };
        for (const key of ["$defs", "definitions"]) {
            if (isObject(input[key])) {
                for (const [name, def] of Object.entries(input[key])) {
                    if (!(name in this.defs)) {
                        this.defs[name] = null; // placeholder against recursion
                        this.defs[name] = this.convert(def, depth + 1).schema;
                    }
                }
            }
        }
        const variants = discriminatedVariants(input);
        if (variants != null) return this.convert({ oneOf: variants, description }, depth + 1);
        for (const key of Object.keys(input)) {
            if (!KNOWN_KEYWORDS.has(key)) this.dropped.add(key);
        }

        if (typeof input.$ref === "string") {
            const match = /^#\/(?:\$defs|definitions)\/(.+)$/.exec(input.$ref);
            if (match == null) {
                this.dropped.add(`$ref ${input.$ref}`);
                return { schema: anySchema(description), shape: null };
            }
            return { schema: withDescription({ $ref: `#/$defs/${match[1]}` }), shape: null };
        }
        if ("const" in input) {
            const value = input.const;
            if (value === null || ["string", "number", "boolean"].includes(typeof value))
                return { schema: withDescription({ const: value }), shape: null };
            this.dropped.add("const (non-primitive)");
            return { schema: anySchema(description), shape: null };
        }
        if (Array.isArray(input.enum)) {
            const values = input.enum.filter((v) => v === null || ["string", "number", "boolean"].includes(typeof v));
            if (values.length > 0) return { schema: withDescription({ enum: values }), shape: null };
            this.dropped.add("enum (non-primitive)");
            return { schema: anySchema(description), shape: null };
        }
        const alternatives = Array.isArray(input.oneOf) ? input.oneOf : Array.isArray(input.anyOf) ? input.anyOf : null;
        if (alternatives != null && alternatives.length > 0) {
            const converted = alternatives.map((alt) => this.convert(alt, depth + 1).schema);
            if (converted.length === 1) return { schema: withDescription(converted[0]), shape: null };
            return { schema: withDescription({ oneOf: converted }), shape: null };
        }
        if (Array.isArray(input.allOf) && input.allOf.length > 0) {
            // Merge object members (the common use); otherwise take the first.
            const objects = input.allOf.filter((s) => isObject(s) && (s.type === "object" || isObject(s.properties)));
            if (objects.length === input.allOf.length) {
                const merged = { type: "object", properties: {}, required: [] };
                for (const s of objects) {
                    Object.assign(merged.properties, s.properties ?? {});
                    if (Array.isArray(s.required)) merged.required.push(...s.required);
                }
                if (description != null) merged.description = description;
                return this.convert(merged, depth + 1);
            }
            this.dropped.add("allOf (non-object members)");
            return this.convert({ ...input.allOf[0], description }, depth + 1);
        }

        let types = input.type;
        if (types == null) {
            if (isObject(input.properties) || "additionalProperties" in input) types = "object";
            else if ("items" in input || Array.isArray(input.prefixItems)) types = "array";
            else return { schema: anySchema(description), shape: null };
        }
        types = (Array.isArray(types) ? types : [types]).filter((t) => typeof t === "string");
        types = [...new Set(types)];
        if (types.length === 0) return { schema: anySchema(description), shape: null };
        if (types.length > 1) {
            const onlyPrimitive = types.every((t) => PRIMITIVE_TYPES.has(t) && t !== "string");
            if (onlyPrimitive) return { schema: withDescription({ type: types }), shape: null };
            const alts = [];
            let shape = null;
            for (const t of types) {
                const { schema, shape: s } = this.convertTyped(input, t, depth);
                alts.push(schema);
                if (t === "object" || t === "array") shape = s;
            }
            return { schema: withDescription({ oneOf: alts }), shape };
        }
        const { schema, shape } = this.convertTyped(input, types[0], depth);
        return { schema: withDescription(schema), shape };
    }

    convertTyped(input, type, depth) {
        switch (type) {
            case "object": {
                const properties = {};
                const props = {};
                const required = new Set(Array.isArray(input.required) ? input.required : []);
                const optional = new Set();
                for (const [name, propSchema] of Object.entries(isObject(input.properties) ? input.properties : {})) {
                    let { schema, shape } = this.convert(propSchema, depth + 1);
                    if (!required.has(name)) {
                        optional.add(name);
                        if (!allowsNull(schema)) {
                            const { description, ...rest } = schema;
                            schema = { oneOf: [rest, { type: "null" }] };
                            if (description != null) schema.description = description;
                        }
                    }
                    properties[name] = schema;
                    if (shape != null) props[name] = shape;
                }
                const out = { type: "object", properties };
                const hasProperties = Object.keys(properties).length > 0;
                if (isObject(input.additionalProperties)) {
                    out.additionalProperties = this.convert(input.additionalProperties, depth + 1).schema;
                } else if (input.additionalProperties === true || (!hasProperties && input.additionalProperties !== false)) {
                    // A free-form map; a schema with properties keeps to them.
                    if (!hasProperties) out.additionalProperties = true;
                }
                const minProperties = nonNegInt(input.minProperties);
                const maxProperties = nonNegInt(input.maxProperties);
                if (minProperties != null) out.minProperties = minProperties;
                if (maxProperties != null && maxProperties >= Object.keys(properties).length)
                    out.maxProperties = maxProperties;
                return { schema: out, shape: { kind: "object", optional, props } };
            }
            case "array": {
                const out = { type: "array" };
                let itemShape = null;
                if (Array.isArray(input.items)) {
                    out.prefixItems = input.items.map((s) => this.convert(s, depth + 1).schema);
                } else if (input.items != null) {
                    const { schema, shape } = this.convert(input.items, depth + 1);
                    out.items = schema;
                    itemShape = shape;
                }
                if (Array.isArray(input.prefixItems))
                    out.prefixItems = input.prefixItems.map((s) => this.convert(s, depth + 1).schema);
                const minItems = nonNegInt(input.minItems);
                const maxItems = nonNegInt(input.maxItems);
                if (minItems != null) out.minItems = minItems;
                if (maxItems != null && maxItems >= (out.prefixItems?.length ?? 0) && maxItems >= (minItems ?? 0))
                    out.maxItems = maxItems;
                return { schema: out, shape: itemShape == null ? null : { kind: "array", items: itemShape } };
            }
            case "string": {
                if (typeof input.format === "string" && STRING_FORMATS.has(input.format))
                    return { schema: { type: "string", format: input.format }, shape: null };
                const out = { type: "string" };
                const minLength = nonNegInt(input.minLength);
                const maxLength = nonNegInt(input.maxLength);
                if (minLength != null && minLength > 0) out.minLength = minLength;
                if (maxLength != null && maxLength >= (minLength ?? 0)) out.maxLength = maxLength;
                return { schema: out, shape: null };
            }
            case "number":
            case "integer":
            case "boolean":
            case "null":
                return { schema: { type }, shape: null };
            default:
                this.dropped.add(`type ${type}`);
                return { schema: anySchema(), shape: null };
        }
    }
}

// Keywords that are either enforced or harmless to drop silently (pure
// annotations); anything else is reported as dropped in the log.
const KNOWN_KEYWORDS = new Set([
    "type", "properties", "required", "additionalProperties", "minProperties", "maxProperties",
    "items", "prefixItems", "minItems", "maxItems", "enum", "const", "oneOf", "anyOf", "allOf",
    "$ref", "$defs", "definitions", "minLength", "maxLength", "format", "description",
    "title", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
    "nullable"
]);

function stripOptionalNulls(value, shape) {
    if (shape == null || value == null) return value;
    if (shape.kind === "object" && isObject(value)) {
        for (const key of Object.keys(value)) {
            if (value[key] === null && shape.optional.has(key)) delete value[key];
            else if (shape.props[key] != null) value[key] = stripOptionalNulls(value[key], shape.props[key]);
        }
    } else if (shape.kind === "array" && Array.isArray(value)) {
        return value.map((item) => stripOptionalNulls(item, shape.items));
    }
    return value;
}

function isEmptyParameters(parameters) {
    if (parameters == null) return true;
    if (!isObject(parameters)) return false;
    const meaningful = Object.keys(parameters).filter((k) => !["$schema", "title", "description", "type"].includes(k));
    if (meaningful.length === 0) return parameters.type == null || parameters.type === "object";
    if (parameters.type === "object" || parameters.type == null) {
        const props = parameters.properties;
        const rest = meaningful.filter((k) => !["properties", "required", "additionalProperties"].includes(k));
        return rest.length === 0 && (props == null || (isObject(props) && Object.keys(props).length === 0)) &&
            parameters.additionalProperties !== true && !isObject(parameters.additionalProperties);
    }
    return false;
}

// Builds node-llama-cpp functions from OpenAI tools. Returns
// { functions, shapes: Map<name, shape>, dropped: Set }.
function buildFunctions(tools) {
    const functions = {};
    const shapes = new Map();
    const dropped = new Set();
    for (const tool of tools) {
        const fn = tool.function;
        const entry = {};
        if (typeof fn.description === "string" && fn.description !== "") entry.description = fn.description;
        if (!isEmptyParameters(fn.parameters)) {
            const converter = new SchemaConverter();
            const { schema, shape } = converter.convert(fn.parameters);
            if (Object.keys(converter.defs).length > 0 && isObject(schema) && !("$defs" in schema))
                schema.$defs = converter.defs;
            entry.params = schema;
            // The model is shown the tool's own schema (as the Qwen template
            // would), not the grammar-oriented conversion.
            const { $schema, ...documented } = fn.parameters;
            entry.documentedParams = documented;
            if (shape != null) shapes.set(fn.name, shape);
            for (const d of converter.dropped) dropped.add(d);
        }
        functions[fn.name] = entry;
    }
    return { functions, shapes, dropped };
}

// Qwen's chat format, with three additions:
// - each function is documented with its original parameters schema;
// - Qwen2.5-Coder often writes a call as bare JSON ({"name": ...}) without
//   the <tool_call> tag: with MISSIONS_LOCAL_MODEL_PREFIX_TRIGGERS=1 a
//   reply starting like that, or with <tool_call>, enters node-llama-cpp's
//   function calling mode, so the name and the arguments are
//   grammar-constrained either way (opt-in, tool_choice "auto" only);
// - with `forceFunctionCall` (tool_choice "required" or a named function)
//   the reply must start with a function call. This uses node-llama-cpp's
//   "initially engaged" function mode (as FunctionaryChatWrapper does) with
//   no disengage triggers: LlamaChat goes straight to generating the function
//   name under a grammar, with the call prefix (`<tool_call>\n{"name": "`)
//   appended by LlamaChat itself after the rendered prompt (see
//   getContextWindowFunctionCallsTokens). The prompt is rendered exactly as
//   without forcing and evaluated once, so the KV cache of a shared prefix is
//   kept (prefix triggers + noPrefixTrigger evaluated it twice and lost it).
//   After the first call the model may add more calls (parallelism) or end.
const CALL_PREFIX_TRIGGERS = [
    LlamaText(new SpecialTokensText("<tool_call>")),
    LlamaText('{"name": "'),
    LlamaText('{"name":"'),
    LlamaText('{\n  "name": "'),
    LlamaText('```json\n{"name": "'),
    LlamaText('```\n{"name": "')
];

class MissionsQwenChatWrapper extends QwenChatWrapper {
    forceFunctionCall = false;
    useCallPrefixTriggers = process.env.MISSIONS_LOCAL_MODEL_PREFIX_TRIGGERS === "1";

    generateAvailableFunctionsSystemText(availableFunctions, options) {
        const documented = {};
        for (const [name, fn] of Object.entries(availableFunctions ?? {})) {
            documented[name] = {
                description: fn.description,
                params: fn.documentedParams ?? fn.params
            };
        }
        return super.generateAvailableFunctionsSystemText(documented, options);
    }

    generateContextState(options) {
        const state = super.generateContextState(options);
        const functions = options.availableFunctions;
        if (functions == null || Object.keys(functions).length === 0) return state;
        if (this.forceFunctionCall) {
            return {
                ...state,
                functionCall: { initiallyEngaged: true, disengageInitiallyEngaged: [] },
                detectFunctionCalls: true
            };
        }
        if (!this.useCallPrefixTriggers) return state;
        return {
            ...state,
            prefixTriggers: [
                ...(state.prefixTriggers ?? []),
                { type: "functionCall", triggers: CALL_PREFIX_TRIGGERS, replaceTrigger: true }
            ],
            detectFunctionCalls: true
        };
    }
}

// ------------------------------------------------------ request parsing --

function resolveText(content, where) {
    if (content == null) return null;
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
        return content.map((part, i) => {
            if (!isObject(part)) throw badRequest(`${where}.content[${i}] must be an object`);
            if (part.type !== "text" && !(part.type == null && typeof part.text === "string"))
                throw badRequest(`${where}.content[${i}]: only "text" content parts are supported, got ${JSON.stringify(part.type)}`);
            if (typeof part.text !== "string") throw badRequest(`${where}.content[${i}].text must be a string`);
            return part.text;
        }).join("");
    }
    throw badRequest(`${where}.content must be a string, an array of text parts or null`);
}

function parseArguments(raw) {
    if (raw == null || raw === "") return undefined;
    if (typeof raw !== "string") return raw;
    try {
        return JSON.parse(raw);
    } catch {
        return raw; // shown to the model as it was
    }
}

// OpenAI messages -> node-llama-cpp ChatHistoryItem[].
function toChatHistory(messages) {
    const history = [];
    const answered = new Set(); // indexes of tool messages matched to a call
    for (let i = 0; i < messages.length; i++) {
        const message = messages[i];
        const where = `messages[${i}]`;
        if (!isObject(message)) throw badRequest(`${where} must be an object`);
        const { role } = message;
        if (role === "system" || role === "developer") {
            history.push({ type: "system", text: resolveText(message.content, where) ?? "" });
        } else if (role === "user") {
            history.push({ type: "user", text: resolveText(message.content, where) ?? "" });
        } else if (role === "assistant") {
            let item = history.at(-1);
            if (item?.type !== "model") {
                item = { type: "model", response: [] };
                history.push(item);
            }
            const text = resolveText(message.content, where);
            if (text != null && text !== "") {
                if (typeof item.response.at(-1) === "string") item.response[item.response.length - 1] += text;
                else item.response.push(text);
            }
            if (message.tool_calls != null) {
                if (!Array.isArray(message.tool_calls)) throw badRequest(`${where}.tool_calls must be an array`);
                message.tool_calls.forEach((call, j) => {
                    const cw = `${where}.tool_calls[${j}]`;
                    if (!isObject(call) || !isObject(call.function)) throw badRequest(`${cw} must be {id, type: "function", function: {name, arguments}}`);
                    if (call.type != null && call.type !== "function") throw badRequest(`${cw}.type must be "function"`);
                    if (typeof call.function.name !== "string" || call.function.name === "")
                        throw badRequest(`${cw}.function.name must be a non-empty string`);
                    if (call.function.arguments != null && typeof call.function.arguments !== "string" && !isObject(call.function.arguments))
                        throw badRequest(`${cw}.function.arguments must be a JSON string`);
                    // The result is the tool message answering this call,
                    // before the next user/assistant message.
                    let result;
                    let toolIndex = 0;
                    for (let k = i + 1; k < messages.length; k++) {
                        const m = messages[k];
                        if (!isObject(m) || m.role === "user" || m.role === "assistant") break;
                        if (m.role !== "tool") continue;
                        const matches = call.id != null && m.tool_call_id != null
                            ? m.tool_call_id === call.id
                            : toolIndex === j;
                        toolIndex++;
                        if (matches && !answered.has(k)) {
                            answered.add(k);
                            result = resolveText(m.content, `messages[${k}]`) ?? "";
                            break;
                        }
                    }
                    item.response.push({
                        type: "functionCall",
                        name: call.function.name,
                        params: parseArguments(call.function.arguments),
                        result: result ?? "",
                        ...(j === 0 ? { startsNewChunk: true } : {})
                    });
                });
            }
        } else if (role === "tool") {
            if (!answered.has(i)) {
                throw badRequest(`${where}: tool message ${JSON.stringify(message.tool_call_id ?? null)} ` +
                    "does not answer a tool call of the preceding assistant message");
            }
        } else {
            throw badRequest(`${where}.role must be one of system, user, assistant, tool; got ${JSON.stringify(role)}`);
        }
    }
    return history;
}

function optionalNumber(body, key, { integer = false, min = -Infinity, max = Infinity } = {}) {
    const value = body[key];
    if (value == null) return undefined;
    if (typeof value !== "number" || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max)
        throw badRequest(`${key} must be ${integer ? "an integer" : "a number"} in [${min}, ${max}]`);
    return value;
}

function parseRequest(body) {
    if (!isObject(body)) throw badRequest("the request body must be a JSON object");
    if (body.stream === true) throw badRequest("stream: true is not supported by this server; send stream: false");
    if (!Array.isArray(body.messages) || body.messages.length === 0) throw badRequest("messages must be a non-empty array");
    if (body.n != null && body.n !== 1) throw badRequest("only n = 1 is supported");
    let tools = [];
    if (body.tools != null) {
        if (!Array.isArray(body.tools)) throw badRequest("tools must be an array");
        const names = new Set();
        tools = body.tools.map((tool, i) => {
            if (!isObject(tool) || (tool.type != null && tool.type !== "function") || !isObject(tool.function))
                throw badRequest(`tools[${i}] must be {type: "function", function: {name, description, parameters}}`);
            const { name, parameters } = tool.function;
            if (typeof name !== "string" || name === "") throw badRequest(`tools[${i}].function.name must be a non-empty string`);
            if (names.has(name)) throw badRequest(`tools[${i}]: duplicate function name ${JSON.stringify(name)}`);
            names.add(name);
            if (parameters != null && !isObject(parameters)) throw badRequest(`tools[${i}].function.parameters must be a JSON Schema object`);
            return tool;
        });
    }
    let toolChoice = body.tool_choice ?? "auto";
    let forcedName = null;
    if (isObject(toolChoice)) {
        const name = toolChoice.function?.name;
        if (typeof name !== "string" || !tools.some((t) => t.function.name === name))
            throw badRequest("tool_choice.function.name must name one of the tools");
        forcedName = name;
        toolChoice = "required";
    } else if (!["auto", "none", "required"].includes(toolChoice)) {
        throw badRequest('tool_choice must be "auto", "none", "required" or {type: "function", function: {name}}');
    }
    if (toolChoice === "required" && tools.length === 0) throw badRequest('tool_choice "required" needs tools');
    let stop;
    if (typeof body.stop === "string") stop = [body.stop];
    else if (Array.isArray(body.stop) && body.stop.every((s) => typeof s === "string")) stop = body.stop.filter((s) => s !== "");
    else if (body.stop != null) throw badRequest("stop must be a string or an array of strings");
    return {
        model: typeof body.model === "string" && body.model !== "" ? body.model : MODEL_ID,
        history: toChatHistory(body.messages),
        tools: forcedName != null ? tools.filter((t) => t.function.name === forcedName) : tools,
        toolChoice,
        maxTokens: optionalNumber(body, "max_completion_tokens", { integer: true, min: 1 }) ??
            optionalNumber(body, "max_tokens", { integer: true, min: 1 }),
        temperature: optionalNumber(body, "temperature", { min: 0, max: 2 }) ?? 0,
        topP: optionalNumber(body, "top_p", { min: 0, max: 1 }),
        seed: optionalNumber(body, "seed", { integer: true }),
        // One call per reply unless the client asks for more: after its first
        // call, this small model tends to invent further ones (a `finish` with
        // made-up values) before it has seen any result. (OpenAI's default is
        // true; a client that wants parallel calls sends it.)
        parallelToolCalls: body.parallel_tool_calls === true,
        stop
    };
}

// ------------------------------------------------------------ the model --

const threads = threadsWanted > 0 ? threadsWanted : undefined;
const llama = await getLlama({
    gpu: false,
    build: "never", // use the prebuilt CPU binary; never compile
    usePrebuiltBinaries: true,
    skipDownload: true, // never download llama.cpp sources
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
        const text = String(message).trimEnd();
        if (text !== "") log(`llama.cpp ${level}: ${text}`);
    },
    ...(threads != null ? { maxThreads: threads } : {})
});
const loadStart = performance.now();
const model = await llama.loadModel({ modelPath: args.model, gpuLayers: 0, useMmap: true });
const context = await model.createContext({
    contextSize: contextSizeWanted,
    sequences: 1,
    batchSize: Math.min(512, contextSizeWanted),
    ...(threads != null ? { threads } : {})
});
const sequence = context.getSequence();
const chatWrapper = new MissionsQwenChatWrapper({ variation: "3", _flatFunctionResultString: true });
const chat = new LlamaChat({ contextSequence: sequence, chatWrapper });
const contextSize = context.contextSize;
log(`loaded ${args.model} in ${((performance.now() - loadStart) / 1000).toFixed(1)}s; ` +
    `context ${contextSize} tokens, threads ${threads ?? "auto"}, chat wrapper ${chatWrapper.wrapperName}`);

// The tokens LlamaChat evaluates before generating: the rendered history and,
// when a function call is forced, the call prefix it appends (tokenized
// separately, as LlamaChat does).
function promptTokensFor(history, functions, forced) {
    const chatHistory = history.at(-1)?.type === "model" ? history : [...history, { type: "model", response: [] }];
    const { contextText } = chatWrapper.generateContextState({
        chatHistory,
        availableFunctions: functions,
        documentFunctionParams: true
    });
    const tokens = contextText.tokenize(model.tokenizer);
    if (!forced) return tokens;
    const callPrefix = LlamaText([
        chatWrapper.settings.functions.parallelism?.call?.sectionPrefix ?? "",
        chatWrapper.settings.functions.call.prefix
    ]);
    return [...tokens, ...callPrefix.tokenize(model.tokenizer, "trimLeadingSpace")];
}

async function complete(request, signal) {
    const started = performance.now();
    const useTools = request.tools.length > 0 && request.toolChoice !== "none";
    const { functions, shapes, dropped } = useTools ? buildFunctions(request.tools) : { functions: undefined, shapes: new Map(), dropped: new Set() };
    if (dropped.size > 0) log(`schema keywords not enforced by the grammar: ${[...dropped].sort().join(", ")}`);

    const forced = useTools && request.toolChoice === "required";
    chatWrapper.forceFunctionCall = forced;
    const promptTokens = promptTokensFor(request.history, functions, forced);
    const reserve = Math.min(request.maxTokens ?? DEFAULT_REPLY_RESERVE, DEFAULT_REPLY_RESERVE) + SLACK;
    if (promptTokens.length + reserve > contextSize) throw contextLengthError(contextSize, promptTokens.length + reserve);
    const maxTokens = Math.min(request.maxTokens ?? DEFAULT_MAX_TOKENS, contextSize - promptTokens.length - SLACK);
    const cachedTokens = Math.min(sequence.compareContextTokens(promptTokens).firstDifferentIndex, promptTokens.length - 1);

    // Small models tend to repeat a parallel call over and over: stop at the
    // first exact repeat (name and arguments) and after MAX_PARALLEL_CALLS.
    const stopCalls = new AbortController();
    const seenCalls = new Set();
    const calls = [];
    const onFunctionCall = (call) => {
        const key = `${call.functionName}\u0000${JSON.stringify(call.params ?? null)}`;
        if (seenCalls.has(key)) stopCalls.abort(new Error("repeated tool call"));
        else calls.push(call);
        seenCalls.add(key);
    };

    const meterBefore = sequence.tokenMeter.getState();
    let result;
    try {
        result = await chat.generateResponse(request.history, {
            functions,
            documentFunctionParams: true,
            maxParallelFunctionCalls: request.parallelToolCalls ? MAX_PARALLEL_CALLS : 1,
            ...(functions != null ? { onFunctionCall } : {}),
            maxTokens,
            temperature: request.temperature,
            ...(request.topP != null ? { topP: request.topP } : {}),
            ...(request.seed != null ? { seed: request.seed } : {}),
            ...(request.stop != null && request.stop.length > 0 ? { customStopTriggers: request.stop } : {}),
            repeatPenalty: false,
            signal: AbortSignal.any([signal, stopCalls.signal]),
            stopOnAbortSignal: true,
            contextShift: {
                // Never drop history silently: the client compacts.
                strategy: () => {
                    throw new ContextOverflowError();
                }
            }
        });
    } catch (err) {
        if (err instanceof ContextOverflowError) throw contextLengthError(contextSize, contextSize + 1);
        if (!stopCalls.signal.aborted || signal.aborted || calls.length === 0) throw err;
        // Stopped at a repeated call: answer with the calls made so far.
        result = { response: "", functionCalls: calls, metadata: { stopReason: "functionCalls" } };
    }
    if (signal.aborted) throw signal.reason;
    const meter = sequence.tokenMeter.diff(meterBefore);
    const seconds = (performance.now() - started) / 1000;

    const uniqueCalls = [];
    const uniqueKeys = new Set();
    for (const call of result.functionCalls ?? []) {
        const key = `${call.functionName}\u0000${JSON.stringify(call.params ?? null)}`;
        if (!uniqueKeys.has(key)) uniqueCalls.push(call);
        uniqueKeys.add(key);
    }
    const toolCalls = uniqueCalls.map((call) => {
        const params = stripOptionalNulls(call.params, shapes.get(call.functionName));
        return {
            id: randomId("call_"),
            type: "function",
            function: { name: call.functionName, arguments: JSON.stringify(params ?? {}) }
        };
    });
    let content = result.response ?? "";
    if (toolCalls.length === 0 && functions != null) {
        // Fallback (not grammar-constrained, so only accepted when the whole
        // reply is calls naming known tools with object arguments).
        for (const call of textToolCalls(content, functions)) {
            toolCalls.push({
                id: randomId("call_"),
                type: "function",
                function: { name: call.name, arguments: JSON.stringify(stripOptionalNulls(call.arguments, shapes.get(call.name))) }
            });
        }
        if (toolCalls.length > 0) content = "";
    }
    if (toolCalls.length > 0) content = content.trim();
    const stopReason = result.metadata?.stopReason;
    const finishReason = toolCalls.length > 0 ? "tool_calls" : stopReason === "maxTokens" ? "length" : "stop";
    if (stopCalls.signal.aborted) log("stopped generation at a repeated tool call");
    const completionTokens = meter.usedOutputTokens;
    log(`request: prompt ${promptTokens.length} tokens (cached ${cachedTokens}, evaluated ${meter.usedInputTokens}), ` +
        `completion ${completionTokens} tokens, ${seconds.toFixed(2)}s, finish ${finishReason}` +
        (toolCalls.length > 0 ? `, tool calls: ${toolCalls.map((c) => c.function.name).join(",")}` : ""));
    const message = { role: "assistant", content: content === "" ? null : content };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    return {
        id: randomId("chatcmpl-"),
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: request.model,
        choices: [{ index: 0, message, finish_reason: finishReason, logprobs: null }],
        usage: {
            prompt_tokens: promptTokens.length,
            completion_tokens: completionTokens,
            total_tokens: promptTokens.length + completionTokens,
            prompt_tokens_details: { cached_tokens: cachedTokens }
        }
    };
}

// A reply that is nothing but tool calls written as JSON (optionally in
// <tool_call> tags or a code fence) that the call triggers did not catch.
function textToolCalls(text, functions) {
    const cleaned = text.replace(/<\/?tool_call>/g, "\n").replace(/```(?:json)?/g, "\n").trim();
    if (!cleaned.startsWith("{") && !cleaned.startsWith("[")) return [];
    let values;
    try {
        values = [JSON.parse(cleaned)];
    } catch {
        try {
            values = cleaned.split(/\n(?=\s*\{)/).map((piece) => JSON.parse(piece));
        } catch {
            return [];
        }
    }
    const calls = [];
    for (const item of values.flat()) {
        if (!isObject(item) || typeof item.name !== "string" || !Object.hasOwn(functions, item.name)) return [];
        let callArgs = item.arguments ?? item.parameters ?? {};
        if (typeof callArgs === "string") {
            try {
                callArgs = JSON.parse(callArgs);
            } catch {
                return [];
            }
        }
        if (!isObject(callArgs)) return [];
        calls.push({ name: item.name, arguments: callArgs });
    }
    return calls;
}

// One request at a time, in arrival order.
let queue = Promise.resolve();
function enqueue(task) {
    const run = queue.then(task, task);
    queue = run.catch(() => {});
    return run;
}

// ------------------------------------------------------------------ HTTP --

function sendJson(res, status, value) {
    if (res.headersSent || res.destroyed) return;
    const body = JSON.stringify(value);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
}

function sendError(res, err) {
    if (err instanceof ApiError) {
        const error = { message: err.message, type: err.type };
        if (err.code != null) error.code = err.code;
        sendJson(res, err.status, { error });
    } else {
        log(`internal error: ${err?.stack ?? err}`);
        sendJson(res, 500, { error: { message: `internal error: ${err?.message ?? err}`, type: "server_error" } });
    }
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let size = 0;
        req.on("data", (chunk) => {
            size += chunk.length;
            if (size > MAX_BODY_BYTES) {
                reject(new ApiError(413, `request body larger than ${MAX_BODY_BYTES} bytes`));
                req.destroy();
                return;
            }
            chunks.push(chunk);
        });
        req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
    });
}

async function handle(req, res) {
    const path = new URL(req.url ?? "/", "http://localhost").pathname.replace(/\/+$/, "") || "/";
    if (path === "/health") {
        if (req.method !== "GET" && req.method !== "HEAD") throw new ApiError(405, "use GET");
        return sendJson(res, 200, { status: "ok" });
    }
    if (path === "/v1/models") {
        if (req.method !== "GET") throw new ApiError(405, "use GET");
        return sendJson(res, 200, {
            object: "list",
            data: [{ id: MODEL_ID, object: "model", created: 0, owned_by: "missions-local" }]
        });
    }
    if (path === "/v1/chat/completions") {
        if (req.method !== "POST") throw new ApiError(405, "use POST");
        const text = await readBody(req);
        let body;
        try {
            body = JSON.parse(text);
        } catch (err) {
            throw badRequest(`the request body is not valid JSON: ${err.message}`);
        }
        const request = parseRequest(body);
        const abort = new AbortController();
        res.on("close", () => {
            if (!res.writableFinished) abort.abort(new Error("client disconnected"));
        });
        const response = await enqueue(async () => {
            if (abort.signal.aborted) throw abort.signal.reason;
            return await complete(request, abort.signal);
        });
        return sendJson(res, 200, response);
    }
    throw new ApiError(404, `no route for ${req.method} ${path}`);
}

const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
        if (res.destroyed) {
            log(`request aborted: ${err?.message ?? err}`);
            return;
        }
        sendError(res, err);
    });
});
server.requestTimeout = 0;
server.on("clientError", (err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
});
process.on("unhandledRejection", (err) => log(`unhandled rejection: ${err?.stack ?? err}`));

function shutdown(signal) {
    log(`${signal}: shutting down`);
    server.close();
    chat.dispose();
    llama.dispose().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));

server.listen(port, args.host, () => {
    const address = server.address();
    const host = address.family === "IPv6" || address.family === 6 ? `[${address.address}]` : address.address;
    process.stdout.write(`listening on http://${host}:${address.port}/v1\n`);
});
