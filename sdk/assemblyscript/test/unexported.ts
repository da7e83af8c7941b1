// An Observer whose entry file forgets the outcome export: init must refuse.
import { Config, Decider, Observer, register } from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";

class Forgetful extends Observer {}

function init(config: Config): Decider {
  return new Forgetful();
}

register(init);
