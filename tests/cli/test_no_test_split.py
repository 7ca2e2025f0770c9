"""A recipe whose data.split gives the test split no share trains and ends with its validation
metrics, said so (it ended with KeyError: 'test_accuracy')."""

from steepest.cli import main


def test_train_without_a_test_split_reports_the_validation_metrics(tmp_path, capsys):
    code = main(["train", "digits_mlp", "--run-dir", str(tmp_path / "r"), "--no-report", "--set", "data.subset=300",
                 "--set", "data.split=[0.8, 0.2, 0.0]", "--set", "trainer.max_steps=5", "--set", "trainer.max_epochs=null", "-q"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("val (no test split) accuracy: ")
