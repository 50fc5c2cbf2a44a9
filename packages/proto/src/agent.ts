/**
 * The protocol between the sbx server and its in-sandbox agent (proto/sbx/agent/v1/agent.proto):
 * the messages, their JSON shapes (the agent speaks JSON lines) and their schemas. Internal to
 * the server and its agent; not part of the public API.
 */
export * from "./gen/sbx/agent/v1/agent_pb.js";
export { isMessageJson } from "./json-check.js";
