//! Placeholder: the lead replaces this file with the benchmark driver.

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
