//! What other engines run a bundle with: a GitHub Actions workflow and a
//! Kubernetes Indexed Job. Neither ever holds task text: each names the
//! bundle file, and every value written into them is checked to be a plain
//! path, name or number first (no `${{ }}`, quotes or newlines can reach YAML
//! or a `run:` script).

use crate::error::{Error, Result};

/// The Claude Code CLI the workflow installs (the version the test tier pins).
pub const CLAUDE_CODE_VERSION: &str = "2.1.332";

/// Refuses a value that is not a plain relative path of `[A-Za-z0-9._/-]`.
pub fn check_path(what: &str, p: &str) -> Result<()> {
    let ok = !p.is_empty()
        && !p.starts_with(['-', '/'])
        && !p.split('/').any(|c| c == ".." || c.is_empty())
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} {p:?} must be a relative path of letters, digits, '.', '_', '-' and '/' (it is written into the generated file)"
        )))
    }
}

/// Refuses an image reference outside `[A-Za-z0-9._/:@-]`.
pub fn check_image(i: &str) -> Result<()> {
    if !i.is_empty()
        && !i.starts_with('-')
        && i.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '@' | '-'))
    {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "image {i:?} is not an image reference (letters, digits and . _ / : @ -)"
        )))
    }
}

/// A GitHub Actions workflow running every task of batch `batch`'s bundle
/// (`tasks` of them, committed at `bundle`) at most `jobs` at a time.
pub fn github_actions(batch: i64, tasks: usize, jobs: usize, bundle: &str) -> Result<String> {
    check_path("the bundle path", bundle)?;
    let indices: Vec<String> = (0..tasks).map(|i| i.to_string()).collect();
    Ok(format!(
        r#"# orch batch {batch}: one job per task of {bundle}, made by `orch-emit --format github-actions`.
# Set the repository variable ORCH_GIT to the git URL orch is built from and
# the secret ANTHROPIC_API_KEY; commit the bundle with this file, run the workflow, then:
#   gh run download RUN_ID --dir orch-records && orch-run ingest orch-records
name: orch batch {batch}
on:
  workflow_dispatch:
permissions:
  contents: write
jobs:
  task:
    name: task ${{{{ matrix.index }}}}
    runs-on: ubuntu-latest
    timeout-minutes: 120
    strategy:
      fail-fast: false
      max-parallel: {jobs}
      matrix:
        index: [{indices}]
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with:
          node-version: "20"
      - name: Install Claude Code
        run: npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}
      - name: Build orch
        env:
          ORCH_GIT: ${{{{ vars.ORCH_GIT }}}}
        run: cargo install --locked --quiet --git "$ORCH_GIT" orch --root "$RUNNER_TEMP/orch"
      - name: Run the task
        env:
          ANTHROPIC_API_KEY: ${{{{ secrets.ANTHROPIC_API_KEY }}}}
          ORCH_JOB_INDEX: ${{{{ matrix.index }}}}
        run: |
          mkdir -p "$RUNNER_TEMP/orch-records"
          "$RUNNER_TEMP/orch/bin/orch-run" job --bundle {bundle} --index - --push > "$RUNNER_TEMP/orch-records/record-$ORCH_JOB_INDEX.jsonl"
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: orch-record-${{{{ matrix.index }}}}
          path: ${{{{ runner.temp }}}}/orch-records/
          if-no-files-found: error
"#,
        indices = indices.join(", ")
    ))
}

/// A Kubernetes Indexed Job running every task of batch `batch`'s bundle
/// from the ConfigMap `orch-bundle-BATCH`, at most `jobs` at a time.
pub fn k8s_job(batch: i64, tasks: usize, jobs: usize, image: &str) -> Result<String> {
    check_image(image)?;
    Ok(format!(
        r#"# orch batch {batch}: one pod per task, made by `orch-emit --format k8s-job`.
# The bundle goes in a ConfigMap first:
#   kubectl create configmap orch-bundle-{batch} --from-file=bundle.jsonl=BUNDLE
# Each pod prints its result record on stdout; collect them with
#   kubectl logs -l batch.kubernetes.io/job-name=orch-batch-{batch} --tail=-1 --prefix=false > records.jsonl
apiVersion: batch/v1
kind: Job
metadata:
  name: orch-batch-{batch}
  labels:
    app.kubernetes.io/managed-by: orch
spec:
  completionMode: Indexed
  completions: {tasks}
  parallelism: {jobs}
  backoffLimit: 0
  ttlSecondsAfterFinished: 604800
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: task
          image: {image}
          command: ["orch-run", "job", "--bundle", "/orch/bundle.jsonl", "--index", "-"]
          env:
            - name: ANTHROPIC_API_KEY
              valueFrom:
                secretKeyRef:
                  name: anthropic
                  key: api-key
          volumeMounts:
            - name: bundle
              mountPath: /orch
              readOnly: true
      volumes:
        - name: bundle
          configMap:
            name: orch-bundle-{batch}
"#
    ))
}
