"""`helpdesk-bridge demo` as a new user runs it: a whole conversation in the terminal."""
from __future__ import annotations

from tests.daemon import Daemon


async def test_demo_carries_a_whole_conversation(tmp_path):
    demo = await Daemon(None, args=["demo"], cwd=tmp_path).start()
    await demo.expect("helpdesk-bridge demo")
    await demo.say("hello")
    await demo.expect('SATE: You said: "hello"')
    await demo.say("I think it is resolved")
    await demo.expect("-- Did this solve your issue?")
    await demo.expect("[1] Yes, solved   [2] No, I still need help")
    await demo.say("1")
    await demo.expect("(updated) Did this solve your issue? Yes, solved")
    await demo.expect("How would you rate")
    await demo.expect("[5] 5 ★")
    await demo.say("5")
    await demo.expect("(updated) Rated 5/5 - thank you!")
    await demo.expect("add a comment")
    await demo.say("Very quick, thanks")
    await demo.expect("(updated) Thanks for your feedback!")
    # and the agent side of the demo
    await demo.say("I need a human")
    await demo.expect("You're now chatting with Alice.")
    await demo.say("/agent Your refund is on its way")
    await demo.expect("Alice: Your refund is on its way")
    await demo.say("/quit")
    assert await demo.wait() == 0
    assert (tmp_path / "helpdesk-bridge-demo.db").exists()  # SQLite in a local file
