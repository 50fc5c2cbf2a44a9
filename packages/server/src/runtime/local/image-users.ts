/**
 * Which of the runtime's sandboxes stand on each image's layers: every sandbox started from
 * an image, warm ones included, from the moment its start begins until it is destroyed and
 * nothing of it runs any more (or its start failed). An image store must not remove the
 * layers of an image in use; deleting an image waits for its sandboxes on their way out first
 * (`departures`). A sandbox whose processes outlived its destroy stands on them until they are
 * gone.
 */
export class ImageUsers {
  readonly #users = new Map<string, Set<ImageUse>>();

  /** A sandbox of image `imageId` begins to start: it stands on the layers until it `leave`s. */
  begin(imageId: string): ImageUse {
    let users = this.#users.get(imageId);
    if (!users) {
      users = new Set();
      this.#users.set(imageId, users);
    }
    const set = users;
    const use = new ImageUse(() => {
      set.delete(use);
      if (set.size === 0 && this.#users.get(imageId) === set) this.#users.delete(imageId);
    });
    set.add(use);
    return use;
  }

  /** Whether any sandbox stands on the image's layers (starting, warm, live or being destroyed). */
  inUse(imageId: string): boolean {
    return (this.#users.get(imageId)?.size ?? 0) > 0;
  }

  /**
   * Settles once the destroy of every sandbox of the image that is on its way out has ended
   * (one whose processes outlived it stays in use: `inUse`).
   */
  async departures(imageId: string): Promise<void> {
    const leaving = [...(this.#users.get(imageId) ?? [])].flatMap((use) => (use.leaving ? [use.leaving] : []));
    await Promise.all(leaving);
  }
}

/** One sandbox standing on an image's layers. */
export class ImageUse {
  #leaving: Promise<void> | undefined;
  readonly #forget: () => void;

  constructor(forget: () => void) {
    this.#forget = forget;
  }

  /** Settles once the sandbox is gone (undefined while it is not going). */
  get leaving(): Promise<void> | undefined {
    return this.#leaving;
  }

  /**
   * The sandbox is going: `departed` settles when its destroy has ended (either way), `gone` once
   * nothing of it runs any more (processes may outlive the destroy); it stands on the layers
   * until then. Only the first call counts.
   */
  leave(departed: Promise<unknown>, gone: Promise<unknown> = departed): void {
    if (this.#leaving) return;
    const ignore = () => {};
    this.#leaving = departed.then(ignore, ignore);
    gone.then(
      () => this.#forget(),
      () => this.#forget(),
    );
  }
}
