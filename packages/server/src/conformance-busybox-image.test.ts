// The conformance suite against the real server, every sandbox started from a pulled image whose
// only program is Debian's static busybox (no python, no bash, no libc): nothing of the suite
// may lean on what the default image (the host's /usr) holds.
import { imageStoreAvailable } from "./images/test-support/available.js";
import { conformanceInImage } from "./images/test-support/conformance-in-image.js";
import { busyboxImage } from "./images/test-support/test-images.js";
import { realServerAvailable } from "./test-support.js";

const available =
  (await realServerAvailable("the conformance suite in a busybox image")) &&
  (await imageStoreAvailable("the conformance suite in a busybox image", ["docker-registry", "skopeo", "htpasswd"]));

if (available) conformanceInImage("busybox", busyboxImage);
