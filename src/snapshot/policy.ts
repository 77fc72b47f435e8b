/**
 * SNAPSHOT, per job: whether a backup reads a snapshot or the live tree.
 *   auto      use a snapshot where the filesystem has a method (btrfs, a [[snapshot]] hook);
 *             else, or when making it fails, back up the live tree with a warning
 *   y         use one where there is a method, and fail the job when making it fails; without
 *             a method, back up the live tree with a warning
 *   n         the live tree
 *   required  a snapshot or no backup: without a method the job is refused before it starts
 * The default is `[backup] snapshot` of the configuration ("auto").
 */
export type SnapshotPolicy = "auto" | "y" | "n" | "required";

export const SNAPSHOT_POLICIES: readonly SnapshotPolicy[] = ["auto", "y", "n", "required"];

/** The job's policy from its SNAPSHOT value; undefined when the value means nothing to us. */
export function parsePolicy(value: string | undefined, dflt: SnapshotPolicy): SnapshotPolicy | undefined {
  const v = value?.trim().toLowerCase();
  if (v === undefined || v === "") return dflt;
  if (["y", "yes", "t", "true", "1", "on"].includes(v)) return "y";
  if (["n", "no", "f", "false", "0", "off", "none"].includes(v)) return "n";
  if (v === "auto" || v === "required") return v;
  return undefined;
}
