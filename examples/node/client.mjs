// Calling equity_engine.v1.EquityService from Node.js with @grpc/grpc-js.
//
//   cd examples/node && npm ci && node client.mjs 127.0.0.1:50051
//
// Health check, server reflection (v1), Allocate with packed columns and with Arrow IPC,
// AllocateStream, and a refused request's google.rpc.BadRequest read from the
// `grpc-status-details-bin` trailer. Uses only the protos shipped in proto/. Prints one
// line per step and exits 1 at the first unexpected answer.

import path from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { tableFromArrays, tableFromIPC, tableToIPC } from "apache-arrow";
import protobuf from "protobufjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoDir = path.resolve(here, "..", "..", "proto");
const target = process.argv[2] ?? "127.0.0.1:50051";
const credentials = grpc.credentials.createInsecure();
// grpc-js accepts 4 MiB per message by default: raise it for large unary answers, or use
// AllocateStream (messages of about 2 MiB).
const options = { "grpc.max_receive_message_length": 64 * 1024 * 1024 };

const loaded = protoLoader.loadSync(
  ["equity_engine/v1/service.proto", "grpc/health/v1/health.proto"],
  { includeDirs: [protoDir], keepCase: true, longs: Number, enums: String, oneofs: true },
);
const api = grpc.loadPackageDefinition(loaded);
const service = new api.equity_engine.v1.EquityService(target, credentials, options);
const health = new api.grpc.health.v1.Health(target, credentials);

function fail(message) {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 60_000 }, (err, reply) =>
      err ? reject(err) : resolve(reply),
    );
  });
}

// --- health ---------------------------------------------------------------------------------
const status = await unary(health, "Check", { service: "equity_engine.v1.EquityService" });
if (status.status !== "SERVING") fail(`health: ${status.status}`);
console.log(`health ${status.status}`);

// --- reflection v1: list the services (the messages are a few lines of the public protocol)
const reflection = protobuf.parse(`
  syntax = "proto3";
  package grpc.reflection.v1;
  message ServerReflectionRequest {
    string host = 1;
    oneof message_request { string file_containing_symbol = 4; string list_services = 7; }
  }
  message ServiceResponse { string name = 1; }
  message ListServiceResponse { repeated ServiceResponse service = 1; }
  message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
  message ServerReflectionResponse {
    string valid_host = 1;
    oneof message_response {
      FileDescriptorResponse file_descriptor_response = 4;
      ListServiceResponse list_services_response = 6;
    }
  }`, { keepCase: true }).root;
const ReflectionRequest = reflection.lookupType("grpc.reflection.v1.ServerReflectionRequest");
const ReflectionResponse = reflection.lookupType("grpc.reflection.v1.ServerReflectionResponse");
const services = await new Promise((resolve, reject) => {
  const raw = new grpc.Client(target, credentials);
  const call = raw.makeBidiStreamRequest(
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    (message) => Buffer.from(ReflectionRequest.encode(message).finish()),
    (bytes) => ReflectionResponse.decode(bytes),
  );
  const names = [];
  call.on("data", (reply) => {
    for (const s of reply.list_services_response?.service ?? []) names.push(s.name);
  });
  call.on("error", reject);
  call.on("end", () => resolve(names));
  call.write(ReflectionRequest.create({ list_services: "" }));
  call.end();
});
if (!services.includes("equity_engine.v1.EquityService")) fail(`reflection: ${services}`);
console.log(`reflection ${services.sort().join(",")}`);

// --- Allocate with packed columns -----------------------------------------------------------
const ids = ["c1", "c2", "c3", "c4", "c5", "c6"];
const segment = ["core", "core", "premium", "premium", "core", "premium"];
const margin = [120, 80, 300, 45, 60, 210];
const retention = [0.8, 0.6, 0.9, 0.5, 0.7, 0.85];
const plan = {
  budget: { total: 40 },
  segment_limits: [{ segment: "premium", cap: 25 }],
  retention_levels: [0, 5, 10, 20],
};
const columns = {
  columns: [
    { name: "customer_id", strings: { values: ids } },
    { name: "segment", strings: { values: segment } },
    { name: "margin", doubles: { values: margin } },
    { name: "retention", doubles: { values: retention } },
  ],
};
const packed = await unary(service, "Allocate", { portfolio: { customers: { columns } }, plan });
const spend = packed.units.columns.columns.find((c) => c.name === "spend");
if (packed.summary.status !== "optimal" || spend.doubles.values.length !== ids.length) {
  fail(`columns: ${JSON.stringify(packed.summary)}`);
}
console.log(`allocate-columns status=${packed.summary.status} ` +
  `gain=${packed.summary.equity_gain.toFixed(2)} spend=${packed.summary.total_spend}`);

// --- Allocate with Arrow IPC (strings arrive dictionary-encoded; answers in LargeUtf8) ---------
const customers = tableFromArrays({
  customer_id: ids,
  segment,
  margin: Float64Array.from(margin),
  retention: Float64Array.from(retention),
});
const arrowIpc = Buffer.from(tableToIPC(customers, "stream"));
const arrow = await unary(service, "Allocate", { portfolio: { customers: { arrow_ipc: arrowIpc } }, plan });
const units = tableFromIPC(arrow.units.arrow_ipc);
if (units.numRows !== ids.length || arrow.summary.equity_gain !== packed.summary.equity_gain) {
  fail(`arrow: ${units.numRows} rows, gain ${arrow.summary.equity_gain}`);
}
console.log(`allocate-arrow rows=${units.numRows} ` +
  `customer_id=${units.schema.fields.find((f) => f.name === "customer_id").type}`);

// --- AllocateStream: header, two batches; plan batches then the summary ----------------------
const streamed = await new Promise((resolve, reject) => {
  const call = service.AllocateStream({ deadline: Date.now() + 60_000 });
  let rows = 0;
  let summary = null;
  call.on("data", (message) => {
    if (message.units) rows += tableFromIPC(message.units.arrow_ipc).numRows;
    if (message.summary) summary = message.summary;
  });
  call.on("error", reject);
  call.on("end", () => resolve({ rows, summary }));
  call.write({ header: { plan } });
  call.write({ batch: { customers: { arrow_ipc: Buffer.from(tableToIPC(customers.slice(0, 3), "stream")) } } });
  call.write({ batch: { customers: { arrow_ipc: Buffer.from(tableToIPC(customers.slice(3), "stream")) } } });
  call.end();
});
if (streamed.rows !== ids.length || streamed.summary?.status !== "optimal") {
  fail(`stream: ${JSON.stringify(streamed)}`);
}
console.log(`stream rows=${streamed.rows} status=${streamed.summary.status}`);

// --- a refused request: google.rpc.Status with BadRequest, from the trailer -------------------
const rpc = new protobuf.Root();
rpc.resolvePath = (origin, target) =>
  target.startsWith("google/protobuf/") ? target : path.join(protoDir, target);
rpc.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
const Status = rpc.lookupType("google.rpc.Status");
const BadRequest = rpc.lookupType("google.rpc.BadRequest");
const ErrorInfo = rpc.lookupType("google.rpc.ErrorInfo");
try {
  await unary(service, "Allocate", {
    portfolio: { customers: { columns } },
    plan: { budget: { total: -1 }, discount_rate: 7 },
  });
  fail("a negative budget was accepted");
} catch (err) {
  if (err.code !== grpc.status.INVALID_ARGUMENT) fail(`bad request: ${err.code} ${err.details}`);
  const [bytes] = err.metadata.get("grpc-status-details-bin");
  const details = Status.decode(bytes).details;
  const bad = BadRequest.decode(details.find((d) => d.type_url.endsWith("google.rpc.BadRequest")).value);
  const info = ErrorInfo.decode(details.find((d) => d.type_url.endsWith("google.rpc.ErrorInfo")).value);
  const requestId = err.metadata.get("x-request-id")[0] ?? info.metadata.request_id;
  console.log(`bad-request code=INVALID_ARGUMENT reason=${info.reason} ` +
    `request_id=${requestId} fields=${bad.field_violations.map((v) => v.field).join(",")}`);
}

service.close();
health.close();
