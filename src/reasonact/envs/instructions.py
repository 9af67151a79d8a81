"""Natural-language instructions for the Meta-World tasks.

Each task has one canonical instruction, a few paraphrases that training may sample, and a few
``unseen`` phrasings that are never used for training, to test generalisation to new wording.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskText:
    instruction: str
    paraphrases: tuple[str, ...]
    unseen: tuple[str, ...]

    @property
    def seen(self) -> tuple[str, ...]:
        return (self.instruction, *self.paraphrases)


def _t(instruction: str, paraphrases: list[str], unseen: list[str]) -> TaskText:
    return TaskText(instruction, tuple(paraphrases), tuple(unseen))


METAWORLD_TEXT: dict[str, TaskText] = {
    "assembly-v3": _t("put the ring on the peg", ["place the ring over the peg", "assemble the ring onto the peg", "slide the ring down onto the peg"], ["fit the nut around the pole", "lower the ring so the peg goes through it"]),
    "basketball-v3": _t("put the ball into the hoop", ["dunk the ball in the basket", "score the ball in the hoop", "drop the ball through the hoop"], ["shoot a basket with the ball", "get the ball into the net"]),
    "bin-picking-v3": _t("move the cube to the other bin", ["pick the cube from one bin and place it in the other", "transfer the block between the bins", "carry the cube into the second bin"], ["relocate the block to the neighbouring container", "take the cube out and drop it in the other box"]),
    "box-close-v3": _t("close the box with its lid", ["put the lid on the box", "cover the box with the lid", "place the lid onto the box"], ["seal the box using the top", "shut the container by adding its cover"]),
    "button-press-topdown-v3": _t("press the button from the top", ["push the button down from above", "press down on the button", "hit the button from above"], ["tap the switch with a downward motion", "depress the button vertically"]),
    "button-press-topdown-wall-v3": _t("press the button from the top behind the wall", ["push the button down from above past the wall", "reach over the wall and press the button down", "press down on the button behind the wall"], ["tap the switch downward with the wall in the way", "depress the walled button vertically"]),
    "button-press-v3": _t("press the button", ["push the button", "press the button forward", "hit the button"], ["activate the switch by pushing it", "poke the button in"]),
    "button-press-wall-v3": _t("press the button behind the wall", ["push the button past the wall", "reach around the wall and press the button", "press the button that the wall guards"], ["activate the switch behind the barrier", "poke the button beyond the wall"]),
    "coffee-button-v3": _t("press the coffee machine button", ["push the button on the coffee machine", "start the coffee machine", "press the button to brew coffee"], ["switch on the espresso maker", "activate the coffee maker with its button"]),
    "coffee-pull-v3": _t("pull the mug from the coffee machine", ["take the cup out of the coffee machine", "slide the mug away from the coffee machine", "pull the coffee cup out"], ["remove the cup from under the espresso maker", "drag the mug back from the machine"]),
    "coffee-push-v3": _t("push the mug under the coffee machine", ["slide the cup into the coffee machine", "put the mug under the spout", "push the coffee cup into the machine"], ["move the cup beneath the espresso maker", "shove the mug under the nozzle"]),
    "dial-turn-v3": _t("turn the dial", ["rotate the dial", "twist the knob", "turn the dial around"], ["spin the rotary knob", "give the dial a turn"]),
    "disassemble-v3": _t("take the ring off the peg", ["remove the ring from the peg", "lift the ring off the peg", "pull the ring up and off the peg"], ["free the nut from the pole", "unmount the ring from the peg"]),
    "door-close-v3": _t("close the door", ["shut the door", "push the door closed", "swing the door shut"], ["get the door closed", "close the open door all the way"]),
    "door-lock-v3": _t("lock the door", ["turn the door lock", "lock the door by turning the knob", "rotate the lock to lock the door"], ["secure the door lock", "twist the latch into the locked position"]),
    "door-open-v3": _t("open the door", ["pull the door open", "swing the door open", "open the door by its handle"], ["get the door open", "pull on the handle until the door opens"]),
    "door-unlock-v3": _t("unlock the door", ["turn the lock to unlock the door", "unlock the door by turning the knob", "rotate the lock open"], ["release the door lock", "twist the latch into the unlocked position"]),
    "hand-insert-v3": _t("put the block into the hole", ["insert the block in the hole", "push the block into the hole", "slide the block into the opening"], ["drop the cube through the gap", "get the block into the hole in the table"]),
    "drawer-close-v3": _t("close the drawer", ["push the drawer shut", "slide the drawer closed", "push the drawer in"], ["shut the open drawer", "get the drawer closed all the way"]),
    "drawer-open-v3": _t("open the drawer", ["pull the drawer open", "slide the drawer out", "pull out the drawer"], ["get the drawer open", "draw the drawer towards you"]),
    "faucet-open-v3": _t("turn the faucet on", ["open the faucet", "rotate the faucet handle to open it", "turn on the tap"], ["start the water by turning the tap", "twist the faucet open"]),
    "faucet-close-v3": _t("turn the faucet off", ["close the faucet", "rotate the faucet handle to close it", "turn off the tap"], ["stop the water by turning the tap", "twist the faucet shut"]),
    "hammer-v3": _t("hammer the nail into the wall", ["use the hammer to drive the nail in", "pick up the hammer and hit the nail", "drive the nail with the hammer"], ["pound the nail in with the hammer", "strike the nail using the hammer"]),
    "handle-press-side-v3": _t("press the handle down from the side", ["push the handle down sideways", "press down on the handle from the side", "push the side handle down"], ["lower the lever from the side", "force the side handle downwards"]),
    "handle-press-v3": _t("press the handle down", ["push the handle down", "press down on the handle", "lower the handle"], ["force the lever downwards", "push down on the lever"]),
    "handle-pull-side-v3": _t("pull the handle up from the side", ["lift the handle from the side", "pull the side handle up", "raise the handle sideways"], ["raise the lever from the side", "draw the side handle upwards"]),
    "handle-pull-v3": _t("pull the handle up", ["lift the handle", "pull up on the handle", "raise the handle"], ["draw the lever upwards", "lift the lever up"]),
    "lever-pull-v3": _t("pull the lever up", ["lift the lever", "raise the lever", "pull the lever upwards"], ["flip the lever up", "rotate the lever to the top"]),
    "pick-place-wall-v3": _t("pick up the puck and place it at the goal behind the wall", ["move the puck over the wall to the goal", "lift the puck past the wall and put it on the goal", "carry the puck over the wall to the target"], ["take the disc across the barrier to the target", "transport the puck beyond the wall to the marked spot"]),
    "pick-out-of-hole-v3": _t("pick the peg out of the hole", ["take the peg out of the hole", "lift the peg from the hole", "pull the peg up out of the hole"], ["extract the rod from the hole", "remove the peg from its hole"]),
    "pick-place-v3": _t("pick up the puck and place it at the goal", ["move the puck to the goal", "put the puck on the goal position", "lift the puck and set it down at the target"], ["transport the disc to the target", "grab the puck and carry it to the marked spot"]),
    "plate-slide-v3": _t("slide the plate into the goal", ["push the plate into the net", "slide the plate forward into the goal", "move the plate into the goal"], ["shove the dish into the net", "glide the plate into the cage"]),
    "plate-slide-side-v3": _t("slide the plate sideways into the goal", ["push the plate into the net from the side", "slide the plate to the side into the goal", "move the plate sideways into the goal"], ["shove the dish sideways into the net", "glide the plate into the cage from the side"]),
    "plate-slide-back-v3": _t("slide the plate back out of the goal", ["pull the plate back out of the net", "slide the plate backwards out of the goal", "get the plate out of the goal"], ["retrieve the dish from the net", "draw the plate out of the cage"]),
    "plate-slide-back-side-v3": _t("slide the plate sideways out of the goal", ["pull the plate out of the net to the side", "slide the plate sideways out of the goal", "get the plate out of the goal sideways"], ["retrieve the dish from the net sideways", "draw the plate out of the cage to the side"]),
    "peg-insert-side-v3": _t("insert the peg into the hole from the side", ["put the peg in the side hole", "push the peg sideways into the hole", "slide the peg into the hole"], ["plug the rod into the box from the side", "fit the peg into the opening sideways"]),
    "peg-unplug-side-v3": _t("unplug the peg from the side", ["pull the peg out sideways", "remove the peg from the side hole", "slide the peg out of the hole"], ["extract the rod sideways", "unplug the rod from the box"]),
    "soccer-v3": _t("kick the ball into the goal", ["push the ball into the goal", "score the ball in the goal", "move the ball into the net"], ["shoot the ball into the net", "roll the ball into the goal"]),
    "stick-push-v3": _t("use the stick to push the thermos to the goal", ["grab the stick and push the bottle to the goal", "push the thermos with the stick", "move the thermos to the goal using the stick"], ["shove the flask forward with the rod", "use the rod to slide the bottle to the target"]),
    "stick-pull-v3": _t("use the stick to pull the thermos to the goal", ["grab the stick and pull the bottle to the goal", "pull the thermos with the stick", "move the thermos to the goal by pulling it with the stick"], ["drag the flask with the rod", "use the rod to draw the bottle to the target"]),
    "push-v3": _t("push the puck to the goal", ["slide the puck to the goal", "push the puck onto the target", "move the puck to the goal by pushing it"], ["shove the disc to the target", "nudge the puck over to the marked spot"]),
    "push-wall-v3": _t("push the puck around the wall to the goal", ["slide the puck past the wall to the goal", "push the puck to the goal behind the wall", "move the puck around the wall to the target"], ["shove the disc past the barrier to the target", "nudge the puck around the obstacle to the marked spot"]),
    "push-back-v3": _t("push the puck back to the goal", ["slide the puck backwards to the goal", "pull the puck back onto the target", "move the puck back to the goal"], ["shove the disc back to the target", "bring the puck back to the marked spot"]),
    "reach-v3": _t("reach the goal", ["move the gripper to the goal", "reach the target position", "put the gripper at the goal"], ["bring the hand to the red target", "go to the goal point"]),
    "reach-wall-v3": _t("reach the goal behind the wall", ["move the gripper over the wall to the goal", "reach the target past the wall", "put the gripper at the goal behind the wall"], ["bring the hand to the target beyond the barrier", "go around the wall to the goal point"]),
    "shelf-place-v3": _t("put the block on the shelf", ["place the block onto the shelf", "pick up the block and set it on the shelf", "move the block to the shelf"], ["store the cube on the rack", "lift the block up onto the shelf"]),
    "sweep-into-v3": _t("sweep the puck into the hole", ["push the puck into the hole", "slide the puck into the hole", "sweep the puck into the opening"], ["brush the disc into the hole", "knock the puck into the gap"]),
    "sweep-v3": _t("sweep the puck off the table", ["push the puck off the edge of the table", "slide the puck off the table", "sweep the puck over the edge"], ["brush the disc off the edge", "knock the puck off the table"]),
    "window-open-v3": _t("open the window", ["slide the window open", "push the window open", "open the sliding window"], ["get the window open", "slide the pane to open it"]),
    "window-close-v3": _t("close the window", ["slide the window closed", "push the window shut", "close the sliding window"], ["get the window shut", "slide the pane to close it"]),
}
