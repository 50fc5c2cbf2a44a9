/** How long a pull or an import (or a create that pulls its image) may take by default: 30 minutes. */
export const IMAGE_TRANSFER_TIMEOUT_MS = 30 * 60_000;
