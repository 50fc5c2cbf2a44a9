// The conformance suite against the real server, every sandbox started from a pulled minimal
// Debian root (mmdebstrap minbase, built from the Debian mirror apt uses): a distribution's
// own root, not the host's /usr, runs every case.
import { imageStoreAvailable } from "./images/test-support/available.js";
import { conformanceInImage } from "./images/test-support/conformance-in-image.js";
import { debianImage } from "./images/test-support/test-images.js";
import { realServerAvailable } from "./test-support.js";

const available =
  (await realServerAvailable("the conformance suite in a Debian image")) &&
  (await imageStoreAvailable("the conformance suite in a Debian image", [
    "docker-registry",
    "skopeo",
    "htpasswd",
    "mmdebstrap",
  ]));

if (available) conformanceInImage("debian", debianImage);
