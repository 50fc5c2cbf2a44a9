/** Process operations for the Effect API (`Processes.exec`, `Processes.outputText`, …). */
export {
  type OutputBytes,
  type OutputName,
  type OutputSource,
  outputBytes,
  outputChunks,
  outputText,
} from "./output-stream.js";
export {
  type ExecOptions,
  getProcess as get,
  type ProcessInfo,
  signalProcess as signal,
  startProcess as exec,
  waitProcess as wait,
  writeStdin,
} from "./process-ops.js";
