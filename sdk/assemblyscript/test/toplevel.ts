// A plugin whose top-level code logs: it runs while the module is instantiated,
// before the harness (or htlcgate) holds the instance's exports.
import { Config, Decider, info, register } from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";

info("top-level code ran");

function init(config: Config): Decider {
  return new Decider();
}

register(init);
