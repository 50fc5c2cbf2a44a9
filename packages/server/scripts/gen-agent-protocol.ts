/**
 * Writes agent/protocol.gen.go: the Go structs of the agent protocol
 * (proto/sbx/agent/v1/agent.proto), made from the same descriptors as the server's TypeScript
 * types (@sbx/proto/agent), so the two sides cannot drift. Run by `pnpm generate` (needs
 * @sbx/proto built, and gofmt); `src/agent-protocol.test.ts` fails when the committed file
 * differs from what this writes.
 *
 * The structs are encoded with encoding/json in the proto3 JSON mapping, the agent's framing:
 * JSON names (lowerCamelCase), default values left out (`omitempty`), 64-bit integers as
 * strings (`,string`), enums by name, and each oneof member as a pointer (set: present). Only
 * what the protocol uses is supported; anything else is refused here rather than guessed.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DescEnum, DescField, DescFile, DescMessage } from "@bufbuild/protobuf";
import { file_sbx_agent_v1_agent } from "@sbx/proto/agent";

// ScalarType numbers (google.protobuf.FieldDescriptorProto.Type) → Go types and whether the
// proto3 JSON mapping writes them as strings.
const SCALARS: Record<number, { go: string; quoted: boolean }> = {
  3: { go: "int64", quoted: true }, // int64
  4: { go: "uint64", quoted: true }, // uint64
  5: { go: "int32", quoted: false }, // int32
  8: { go: "bool", quoted: false }, // bool
  9: { go: "string", quoted: false }, // string
  13: { go: "uint32", quoted: false }, // uint32
};

const camel = (snake: string): string =>
  snake
    .split("_")
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1).toLowerCase())
    .join("");

/** Go's name for a message or enum: nested ones are prefixed by their parents. */
const goType = (desc: DescMessage | DescEnum): string =>
  desc.typeName.slice(desc.file.proto.package.length + 1).replaceAll(".", "");

function scalar(field: DescField, type: number): { go: string; quoted: boolean } {
  const found = SCALARS[type];
  if (!found) throw new Error(`${field}: scalar type ${type} is not supported; add it to SCALARS`);
  return found;
}

/** The Go type of a field and its JSON tag options. */
function fieldType(field: DescField): { go: string; quoted: boolean } {
  switch (field.fieldKind) {
    case "scalar":
      return scalar(field, field.scalar);
    case "enum":
      return { go: goType(field.enum), quoted: false };
    case "message":
      return { go: `*${goType(field.message)}`, quoted: false };
    case "list":
      if (field.listKind === "message") return { go: `[]*${goType(field.message)}`, quoted: false };
      if (field.listKind === "enum") return { go: `[]${goType(field.enum)}`, quoted: false };
      if (scalar(field, field.scalar).quoted) throw new Error(`${field}: repeated 64-bit integers are not supported`);
      return { go: `[]${scalar(field, field.scalar).go}`, quoted: false };
    case "map": {
      if (field.mapKey !== 9) throw new Error(`${field}: only string map keys are supported`);
      if (field.mapKind !== "scalar" || field.scalar !== 9) throw new Error(`${field}: only map<string, string>`);
      return { go: "map[string]string", quoted: false };
    }
  }
}

function messageCode(message: DescMessage): string {
  const name = goType(message);
  const lines = [`// ${name} is ${message.typeName}.`, `type ${name} struct {`];
  for (const field of [...message.fields].sort((a, b) => a.number - b.number)) {
    let { go, quoted } = fieldType(field);
    const explicit = field.oneof !== undefined || (field.presence === 1 && field.fieldKind === "scalar");
    if (explicit && field.fieldKind !== "message") {
      if (quoted) throw new Error(`${field}: a 64-bit integer with presence is not supported`);
      go = `*${go}`; // present or not: a oneof member or a proto3 optional
    }
    const options = ["omitempty", ...(quoted ? ["string"] : [])].join(",");
    const oneof = field.oneof ? ` // oneof ${field.oneof.name}` : "";
    lines.push(`\t${camel(field.name)} ${go} \`json:"${field.jsonName},${options}"\`${oneof}`);
  }
  lines.push("}");
  return lines.join("\n");
}

function enumCode(desc: DescEnum): string {
  const name = goType(desc);
  // protobuf-es's shared prefix of the value names, e.g. "file_type_" for FILE_TYPE_FILE.
  const prefix = (desc.sharedPrefix ?? "").toUpperCase();
  const constName = (valueName: string) => name + camel(valueName.slice(prefix.length));
  const names = `${name[0]!.toLowerCase()}${name.slice(1)}Names`;
  const lines = [
    `// ${name} is ${desc.typeName}; in JSON, the value's name.`,
    `type ${name} int32`,
    "",
    "const (",
    ...desc.values.map((v) => `\t${constName(v.name)} ${name} = ${v.number}`),
    ")",
    "",
    `var ${names} = map[${name}]string{`,
    ...desc.values.map((v) => `\t${constName(v.name)}: ${JSON.stringify(v.name)},`),
    "}",
    "",
    `func (v ${name}) MarshalJSON() ([]byte, error) { return enumJSON(${names}[v], int32(v)) }`,
    "",
    `func (v *${name}) UnmarshalJSON(data []byte) error {`,
    "\tn, err := enumFromJSON(data, func(name string) (int32, bool) {",
    `\t\tfor value, known := range ${names} {`,
    "\t\t\tif known == name {",
    "\t\t\t\treturn int32(value), true",
    "\t\t\t}",
    "\t\t}",
    "\t\treturn 0, false",
    "\t})",
    `\t*v = ${name}(n)`,
    "\treturn err",
    "}",
  ];
  return lines.join("\n");
}

const HELPERS = `// enumJSON writes an enum value by name (by number if it has none).
func enumJSON(name string, n int32) ([]byte, error) {
	if name == "" {
		return json.Marshal(n)
	}
	return json.Marshal(name)
}

// enumFromJSON reads an enum value written by name or by number.
func enumFromJSON(data []byte, byName func(string) (int32, bool)) (int32, error) {
	var name string
	if err := json.Unmarshal(data, &name); err == nil {
		if n, ok := byName(name); ok {
			return n, nil
		}
		return 0, fmt.Errorf("unknown enum value %q", name)
	}
	var n int32
	err := json.Unmarshal(data, &n)
	return n, err
}`;

function collect(file: DescFile): { messages: DescMessage[]; enums: DescEnum[] } {
  const messages: DescMessage[] = [];
  const enums: DescEnum[] = [...file.enums];
  const visit = (m: DescMessage) => {
    messages.push(m);
    enums.push(...m.nestedEnums);
    m.nestedMessages.forEach(visit);
  };
  file.messages.forEach(visit);
  return { messages, enums };
}

/** The Go source for `file`, before gofmt. */
export function generateGo(file: DescFile): string {
  const { messages, enums } = collect(file);
  return [
    `// Code generated by scripts/gen-agent-protocol.ts from proto/${file.name}.proto. DO NOT EDIT.`,
    "",
    "package main",
    "",
    'import (\n\t"encoding/json"\n\t"fmt"\n)',
    ...messages.map(messageCode),
    ...enums.map(enumCode),
    HELPERS,
    "",
  ].join("\n\n");
}

/** `source` as gofmt writes it. */
export function gofmt(source: string): string {
  return execFileSync("gofmt", [], { input: source, encoding: "utf8" });
}

/** Where the generated file lives, and its text for the protocol as @sbx/proto has it now. */
export const GENERATED_GO = join(dirname(fileURLToPath(import.meta.url)), "..", "agent", "protocol.gen.go");
export const generatedGo = (): string => gofmt(generateGo(file_sbx_agent_v1_agent));

if (import.meta.main) {
  writeFileSync(GENERATED_GO, generatedGo());
  console.log(`gen-agent-protocol: wrote ${GENERATED_GO}`);
}
